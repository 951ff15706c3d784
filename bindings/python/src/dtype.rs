//! From NumPy dtypes to [`TypeSpec`]s and back: the type-compatibility rules across languages.
//!
//! A topic records its payload type's name, size, alignment and version; every process must
//! give the same four. A dtype gives size (`itemsize`) and alignment (`alignment`); the name
//! is given (`type_name=`) or derived:
//!
//! - a native-endian scalar: the Rust primitive's name (`u8`…`u64`, `i8`…`i64`, `f32`, `f64`,
//!   `bool`), so `dtype=np.float64` meets a Rust `Topic<f64>`;
//! - a sub-array dtype `(base, shape)`: Rust's array name, `[f32; 2]`, `[[u8; 3]; 4]`;
//! - a structured dtype: `struct { field: type @ offset, ... }`, a name that only another
//!   process deriving it from the same dtype gives; to meet a Rust or C struct, pass the
//!   Rust type's `std::any::type_name` (`my_app::Tick`) as `type_name`.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString, PyTuple};
use shmlane::TypeSpec;

/// The `numpy` module, imported once.
pub(crate) fn numpy(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static NUMPY: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    NUMPY.get_or_try_init(py, || py.import("numpy").map(Bound::unbind)).map(|m| m.bind(py))
}

/// `numpy.dtype(obj)`.
pub(crate) fn dtype_of<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    numpy(obj.py())?.getattr("dtype")?.call1((obj,))
}

/// `numpy.frombuffer(buffer, dtype)`: an array over `buffer`'s memory (no copy) whose base
/// keeps `buffer` exported, hence alive.
pub(crate) fn frombuffer<'py>(
    buffer: &Bound<'py, PyAny>,
    dtype: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let kwargs = PyDict::new(buffer.py());
    kwargs.set_item("dtype", dtype)?;
    numpy(buffer.py())?.getattr("frombuffer")?.call((buffer,), Some(&kwargs))
}

/// What a topic is opened with: the type to check (none: adopt the recorded one) and the
/// dtype of the arrays its loans and samples are seen as.
#[derive(Debug)]
pub(crate) struct Payload {
    pub(crate) spec: Option<TypeSpec>,
    /// The given dtype, if any.
    pub(crate) dtype: Option<Py<PyAny>>,
}

impl Payload {
    /// The payload from `node.topic`'s arguments.
    pub(crate) fn from_args(
        dtype: Option<&Bound<'_, PyAny>>,
        size: Option<u64>,
        align: Option<u64>,
        type_name: Option<String>,
        version: u64,
    ) -> PyResult<Payload> {
        let Some(dtype) = dtype else {
            let Some(size) = size else {
                if align.is_some() || type_name.is_some() {
                    return Err(PyValueError::new_err(
                        "give the payload's size (or a dtype) with its align or type_name",
                    ));
                }
                return Ok(Payload { spec: None, dtype: None });
            };
            let align = align.unwrap_or(1);
            let name = match type_name {
                Some(name) => name,
                None if align == 1 => format!("[u8; {size}]"),
                None => {
                    return Err(PyValueError::new_err(
                        "give type_name for raw payloads aligned above 1 byte (the name of the \
                         Rust or C type they are, e.g. 'my_app::Frame')",
                    ));
                }
            };
            return Ok(Payload {
                spec: Some(TypeSpec::new(name, size, align, version)),
                dtype: None,
            });
        };
        let dtype = dtype_of(dtype)?;
        if dtype.getattr("hasobject")?.extract::<bool>()? {
            return Err(PyTypeError::new_err(
                "a dtype holding Python objects cannot travel through shared memory",
            ));
        }
        let itemsize: u64 = dtype.getattr("itemsize")?.extract()?;
        if let Some(size) = size.filter(|&size| size != itemsize) {
            return Err(PyValueError::new_err(format!(
                "size={size} contradicts the dtype's itemsize {itemsize}: give one of them"
            )));
        }
        let structured = !dtype.getattr("names")?.is_none();
        let aligned: bool = dtype.getattr("isalignedstruct")?.extract()?;
        let align = match align {
            Some(align) => align,
            None if structured && !aligned => natural_alignment(&dtype)?.ok_or_else(|| {
                PyValueError::new_err(
                    "this structured dtype has no padding where a #[repr(C)] struct has some: \
                     build it with np.dtype([...], align=True), or give align= for a packed type",
                )
            })?,
            None => dtype.getattr("alignment")?.extract()?,
        };
        let name = match type_name {
            Some(name) => name,
            None => derive_name(&dtype)?,
        };
        let spec = TypeSpec::new(name, itemsize, align, version);
        Ok(Payload { spec: Some(spec), dtype: Some(dtype.unbind()) })
    }
}

/// The dtype of the arrays over a topic's payload: the one given, else one derived from the
/// recorded type name if it is a Rust primitive or array of one with the recorded size and
/// alignment, else rows of bytes (`("u1", (size,))`, or `uint8` for a size of 1).
pub(crate) fn view_dtype(
    py: Python<'_>,
    given: Option<&Py<PyAny>>,
    spec: &TypeSpec,
) -> PyResult<Py<PyAny>> {
    if let Some(dtype) = given {
        return Ok(dtype.clone_ref(py));
    }
    let of = |scalar: &str, dims: Vec<u64>| -> PyResult<Bound<'_, PyAny>> {
        let base = dtype_of(&PyString::new(py, scalar))?;
        if dims.is_empty() {
            return Ok(base);
        }
        let shape = PyTuple::new(py, dims)?.into_any();
        dtype_of(PyTuple::new(py, [base, shape])?.as_any())
    };
    if let Some((scalar, dims)) = parse_rust_name(&spec.name) {
        let dtype = of(scalar, dims)?;
        let fits = dtype.getattr("itemsize")?.extract::<u64>()? == spec.size
            && dtype.getattr("alignment")?.extract::<u64>()? == spec.align;
        if fits {
            return Ok(dtype.unbind());
        }
    }
    let dims = if spec.size == 1 { vec![] } else { vec![spec.size] };
    Ok(of("uint8", dims)?.unbind())
}

/// The alignment a structured dtype built without `align=True` has as a C struct (its fields'
/// largest), if its layout is one a C struct has: every field at a multiple of its own
/// alignment, the size a multiple of the struct's. NumPy calls such a dtype's alignment 1.
fn natural_alignment(dtype: &Bound<'_, PyAny>) -> PyResult<Option<u64>> {
    let names = dtype.getattr("names")?;
    if names.is_none() {
        return Ok(Some(dtype.getattr("alignment")?.extract()?));
    }
    let fields = dtype.getattr("fields")?;
    let mut align = 1;
    for field in names.try_iter()? {
        let entry = fields.get_item(field?)?;
        let offset: u64 = entry.get_item(1)?.extract()?;
        let Some(field_align) = natural_alignment(&entry.get_item(0)?)? else {
            return Ok(None);
        };
        if !offset.is_multiple_of(field_align) {
            return Ok(None);
        }
        align = align.max(field_align);
    }
    let itemsize: u64 = dtype.getattr("itemsize")?.extract()?;
    Ok(itemsize.is_multiple_of(align).then_some(align))
}

/// The Rust-style name of a dtype (see the module's rules).
fn derive_name(dtype: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok((base, shape)) = dtype.getattr("subdtype")?.extract::<(Bound<'_, PyAny>, Vec<u64>)>()
    {
        let mut name = derive_name(&base)?;
        for n in shape.iter().rev() {
            name = format!("[{name}; {n}]");
        }
        return Ok(name);
    }
    let names = dtype.getattr("names")?;
    if !names.is_none() {
        let fields = dtype.getattr("fields")?;
        let mut parts = Vec::new();
        for field in names.try_iter()? {
            let field = field?;
            // (dtype, offset) or (dtype, offset, title)
            let entry = fields.get_item(&field)?;
            let (ty, offset) = (entry.get_item(0)?, entry.get_item(1)?.extract::<u64>()?);
            parts.push(format!("{}: {} @ {offset}", field.extract::<String>()?, derive_name(&ty)?));
        }
        return Ok(format!("struct {{ {} }}", parts.join(", ")));
    }
    if !dtype.getattr("isnative")?.extract::<bool>()? {
        return Err(PyValueError::new_err(format!(
            "dtype {dtype} is not in this machine's byte order: use a native one, or give \
             type_name"
        )));
    }
    let kind: String = dtype.getattr("kind")?.extract()?;
    let itemsize: u64 = dtype.getattr("itemsize")?.extract()?;
    let name = match (kind.as_str(), itemsize) {
        ("b", 1) => "bool".to_owned(),
        ("i", 1 | 2 | 4 | 8) => format!("i{}", itemsize * 8),
        ("u", 1 | 2 | 4 | 8) => format!("u{}", itemsize * 8),
        ("f", 4 | 8) => format!("f{}", itemsize * 8),
        _ => {
            return Err(PyValueError::new_err(format!(
                "dtype {dtype} has no Rust counterpart to name it after: give type_name"
            )));
        }
    };
    Ok(name)
}

/// A Rust primitive or (nested) array name: the NumPy scalar type and the array dimensions,
/// outermost first (`[[f32; 2]; 3]` is `("float32", [3, 2])`).
fn parse_rust_name(name: &str) -> Option<(&'static str, Vec<u64>)> {
    let mut dims = Vec::new();
    let mut name = name.trim();
    while let Some(inner) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        let (element, len) = inner.rsplit_once(';')?;
        dims.push(len.trim().parse().ok()?);
        name = element.trim();
    }
    let scalar = match name {
        "bool" => "bool",
        "u8" => "uint8",
        "u16" => "uint16",
        "u32" => "uint32",
        "u64" => "uint64",
        "i8" => "int8",
        "i16" => "int16",
        "i32" => "int32",
        "i64" => "int64",
        "f32" => "float32",
        "f64" => "float64",
        _ => return None,
    };
    Some((scalar, dims))
}

#[cfg(test)]
mod tests {
    use super::parse_rust_name;

    #[test]
    fn rust_names_parse_to_numpy_scalars_and_dimensions() {
        assert_eq!(parse_rust_name("f64"), Some(("float64", vec![])));
        assert_eq!(parse_rust_name("[u8; 16]"), Some(("uint8", vec![16])));
        assert_eq!(parse_rust_name("[[f32; 2]; 3]"), Some(("float32", vec![3, 2])));
        assert_eq!(parse_rust_name("my_app::Tick"), None);
        assert_eq!(parse_rust_name("[my_app::Tick; 2]"), None);
        assert_eq!(parse_rust_name("[u8; x]"), None);
    }
}
