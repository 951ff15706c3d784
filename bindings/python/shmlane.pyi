"""Zero-copy shared-memory publish/subscribe, request/response and events between processes on
one host (Linux), with NumPy views over the payload in shared memory."""

from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Optional, TypedDict, Union

import numpy as np
import numpy.typing as npt

__version__: str

DTypeLike = npt.DTypeLike
Strategy = Literal["blocking", "spin", "yield", "backoff", "periodic"]
Overflow = Literal["drop_oldest", "block", "reject"]
Mode = Literal["open_or_create", "create", "open"]

class Error(Exception):
    """Base class of every shmlane error; its message says what to do."""

class TypeMismatch(Error):
    """The service records another payload type (name, size, alignment or version)."""

class TypeRequired(Error):
    """The topic does not exist and cannot be created without its payload type."""

class NotFound(Error):
    """The service does not exist (mode="open")."""

class AlreadyExists(Error):
    """The service exists already (mode="create")."""

class InvalidConfig(Error):
    """A name or a setting is out of range."""

class Corrupt(Error):
    """A service's shared memory failed validation."""

class NoFreeSlot(Error):
    """Every slot of that kind is held by a live process."""

class OutOfBlocks(Error):
    """Every payload block is loaned or held."""

class SubscriberFull(Error):
    """A subscriber's queue is full (overflow "reject", or "block" past its timeout)."""

class TimedOut(Error):
    """Nothing arrived before the timeout."""

class TooManyHeld(Error):
    """The subscriber holds max_held samples already."""

class Busy(Error):
    """Another thread is using this handle (blocked in a wait or a send)."""

class Closed(Error):
    """The handle was closed."""

class InUse(Error):
    """The handle cannot be closed: samples or loans it lent are still alive."""

class TopicConfig(TypedDict):
    max_publishers: int
    max_subscribers: int
    subscriber_capacity: int
    max_held: int
    max_loans: int
    max_slice_len: int
    history: int
    overflow: Overflow

class BlockCounts(TypedDict):
    total: int
    free: int
    loaned: int
    held: int
    history: int

class TypeInfo(TypedDict):
    type_name: str
    size: int
    align: int
    version: int

class PayloadSpec(TypedDict, total=False):
    dtype: DTypeLike
    size: int
    align: int
    type_name: str
    version: int

class Peer(TypedDict):
    slot: int
    pid: Optional[int]
    liveness: Literal["alive", "dead", "unknown"]
    drops: int

class ServiceInfo(TypedDict):
    namespace: str
    name: str
    kind: Literal["topic", "rpc", "event"]
    type_name: Optional[str]
    type_size: Optional[int]
    type_version: Optional[int]
    publishers: list[Peer]
    subscribers: list[Peer]
    path: str
    size: int
    problem: Optional[str]

class NodeInfo(TypedDict):
    namespace: str
    name: str
    pid: Optional[int]
    liveness: Literal["alive", "dead", "unknown"]
    heartbeat_age: Optional[float]

class Node:
    """A participant: its name, the namespace its services live in, and their directory."""

    def __init__(
        self,
        name: str,
        namespace: Optional[str] = None,
        root: Optional[Union[str, PathLike[str]]] = None,
        heartbeat: Optional[float] = None,
    ) -> None: ...
    @property
    def name(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def root(self) -> Optional[Path]: ...
    def heartbeat(self) -> None: ...
    def remove_dead_nodes(self) -> int: ...
    def topic(
        self,
        service: str,
        *,
        dtype: Optional[DTypeLike] = None,
        size: Optional[int] = None,
        align: Optional[int] = None,
        type_name: Optional[str] = None,
        version: int = 0,
        mode: Mode = "open_or_create",
        max_publishers: Optional[int] = None,
        max_subscribers: Optional[int] = None,
        subscriber_capacity: Optional[int] = None,
        max_held: Optional[int] = None,
        max_loans: Optional[int] = None,
        max_slice_len: Optional[int] = None,
        history: Optional[int] = None,
        overflow: Optional[Overflow] = None,
        max_pool_bytes: Optional[int] = None,
    ) -> Topic:
        """Opens (or creates) a topic of a NumPy dtype, of raw bytes (size=...), or, given
        neither, an existing topic as the type it records."""
    def event(self, service: str, *, max_listeners: int = 8, max_event_id: int = 64) -> Event: ...
    def rpc(
        self,
        service: str,
        request: Optional[Union[DTypeLike, PayloadSpec]] = None,
        response: Optional[Union[DTypeLike, PayloadSpec]] = None,
        *,
        max_clients: int = 8,
        capacity: int = 64,
    ) -> Rpc: ...

class Topic:
    @property
    def service(self) -> str: ...
    @property
    def type_name(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def align(self) -> int: ...
    @property
    def version(self) -> int: ...
    @property
    def dtype(self) -> np.dtype[Any]: ...
    @property
    def config(self) -> TopicConfig: ...
    def publisher(self, block_timeout: Optional[float] = None) -> Publisher: ...
    def subscriber(self, strategy: Strategy = "blocking") -> Subscriber: ...

class Publisher:
    def loan(self, n: int = 1) -> npt.NDArray[Any]:
        """A writable array of n elements over a payload block in shared memory."""
    def send(self, loan: Union[npt.NDArray[Any], Loan]) -> int:
        """Publishes a loan (its array); returns the subscribers it was queued for."""
    def send_copy(self, data: Any) -> int:
        """Publishes a copy of bytes or a C-contiguous array of the topic's dtype."""
    @property
    def element_size(self) -> int: ...
    @property
    def dtype(self) -> np.dtype[Any]: ...
    def subscribers(self) -> int: ...
    def block_counts(self) -> BlockCounts: ...
    def close(self) -> None: ...
    def __enter__(self) -> Publisher: ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...

class Loan:
    """The buffer behind a loan's array (writable, in shared memory)."""

    def __len__(self) -> int: ...
    def __buffer__(self, flags: int) -> memoryview: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def sent(self) -> bool: ...

class Subscriber:
    def receive(self, timeout: Optional[float] = None) -> Optional[Sample]:
        """The next sample or None; with a timeout, waits with the GIL released."""
    def wait(self, timeout: Optional[float] = None) -> Sample:
        """Waits with the GIL released; raises TimedOut after `timeout` seconds."""
    @property
    def drops(self) -> int: ...
    @property
    def held(self) -> int: ...
    @property
    def element_size(self) -> int: ...
    @property
    def dtype(self) -> np.dtype[Any]: ...
    def flush_returns(self) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> Subscriber: ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...

class Sample:
    """A received sample in shared memory (read-only buffer); held until it and every view
    over it are gone, or release()."""

    @property
    def array(self) -> npt.NDArray[Any]:
        """A read-only array over the sample in place (no copy)."""
    def __array__(self, dtype: Optional[DTypeLike] = None, copy: Optional[bool] = None) -> npt.NDArray[Any]: ...
    def __buffer__(self, flags: int) -> memoryview: ...
    def __len__(self) -> int: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def dtype(self) -> np.dtype[Any]: ...
    @property
    def released(self) -> bool: ...
    def tobytes(self) -> bytes: ...
    def release(self) -> None: ...
    def __enter__(self) -> Sample: ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...

class Event:
    @property
    def max_event_id(self) -> int: ...
    def notifier(self) -> Notifier: ...
    def listener(self) -> Listener: ...

class Notifier:
    def notify(self, id: int) -> int:
        """Signals `id` to every listener; returns how many listener slots are held."""

class Listener:
    def try_take(self) -> list[int]: ...
    def wait(self, timeout: Optional[float] = None) -> list[int]:
        """Waits with the GIL released; raises TimedOut after `timeout` seconds."""

class Rpc:
    @property
    def request_type(self) -> TypeInfo: ...
    @property
    def response_type(self) -> TypeInfo: ...
    def server(self, strategy: Strategy = "blocking") -> Server: ...
    def client(self, strategy: Strategy = "blocking") -> Client: ...

class Server:
    def receive(self, timeout: Optional[float] = None) -> Optional[Request]: ...
    def wait(self, timeout: Optional[float] = None) -> Request: ...
    def respond(self, request: Request, response: Any) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> Server: ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...

class Request:
    """A received request in shared memory (read-only buffer), as a Sample."""

    @property
    def array(self) -> npt.NDArray[Any]: ...
    def __array__(self, dtype: Optional[DTypeLike] = None, copy: Optional[bool] = None) -> npt.NDArray[Any]: ...
    def __buffer__(self, flags: int) -> memoryview: ...
    def __len__(self) -> int: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def client(self) -> int: ...
    def tobytes(self) -> bytes: ...
    def release(self) -> None: ...
    def __enter__(self) -> Request: ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...

class Pending:
    """A request sent and not yet answered."""

class Client:
    def send(self, request: Any) -> Pending: ...
    def receive(self, pending: Pending, timeout: Optional[float] = None) -> Optional[Sample]: ...
    def wait(self, pending: Pending, timeout: Optional[float] = None) -> Sample: ...
    def call(self, request: Any, timeout: Optional[float] = None) -> Sample: ...
    def close(self) -> None: ...
    def __enter__(self) -> Client: ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...

def list_services(
    root: Optional[Union[str, PathLike[str]]] = None, namespace: Optional[str] = None
) -> list[ServiceInfo]: ...
def list_nodes(
    root: Optional[Union[str, PathLike[str]]] = None, namespace: Optional[str] = None
) -> list[NodeInfo]: ...
