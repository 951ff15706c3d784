//! What a handle lends to C (loans, samples, requests) lives in a fixed table of the handle,
//! named by a token rather than a pointer: a token released once, a stale copy of one, or one
//! of another handle matches no entry, so misuse is caught without touching freed memory.
//!
//! ```text
//!  token (u64)                                owner (u64)
//!  63                     16 15          0   63                             0
//! +-------------------------+-------------+ +--------------------------------+
//! | generation (from 1)     | entry index | | the table's serial in process  |
//! +-------------------------+-------------+ +--------------------------------+
//! ```
//!
//! An entry's generation grows each time it is filled, so a token is never 0 and never
//! repeats within a table (2^48 fills of one entry). Each entry's item lives in a box of its
//! own, allocated with the table: items never move, and using one entry touches no other's
//! memory, so a pointer C holds into an item (an inline loan's or sample's bytes) stays valid
//! until that item leaves the table.

use std::sync::atomic::{AtomicU64, Ordering};

/// Entries a table may have (entry indices take 16 bits).
pub(crate) const MAX_ENTRIES: u32 = 1 << 16;

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Another table's (another handle's).
    Foreign,
    /// Its entry was emptied since, or it never named one (0, a tampered token).
    Released,
}

/// A fixed table of items lent out, each named by a token.
#[derive(Debug)]
pub(crate) struct Slots<T> {
    owner: u64,
    entries: Box<[Entry<T>]>,
    /// Indices of the empty entries.
    free: Vec<u32>,
}

#[derive(Debug)]
struct Entry<T> {
    generation: u64,
    item: Box<Option<T>>,
}

impl<T> Slots<T> {
    /// A table of `capacity` entries (1 to [`MAX_ENTRIES`]; clamped).
    pub(crate) fn new(capacity: u32) -> Self {
        static SERIAL: AtomicU64 = AtomicU64::new(1);
        // Relaxed: only uniqueness matters.
        let owner = SERIAL.fetch_add(1, Ordering::Relaxed);
        let capacity = capacity.clamp(1, MAX_ENTRIES);
        let entries =
            (0..capacity).map(|_| Entry { generation: 0, item: Box::new(None) }).collect();
        Slots { owner, entries, free: (0..capacity).rev().collect() }
    }

    /// This table's serial (the `owner` word of its tokens).
    pub(crate) fn owner(&self) -> u64 {
        self.owner
    }

    /// Items lent out.
    pub(crate) fn out(&self) -> usize {
        self.entries.len() - self.free.len()
    }

    /// Whether an item can be stored.
    pub(crate) fn has_room(&self) -> bool {
        !self.free.is_empty()
    }

    /// Stores `item`; returns its token and the stored item, or gives it back if the table is
    /// full.
    pub(crate) fn insert(&mut self, item: T) -> Result<(u64, &mut T), T> {
        let Some(index) = self.free.pop() else { return Err(item) };
        let entry = &mut self.entries[index as usize];
        entry.generation += 1;
        let token = (entry.generation << 16) | u64::from(index);
        Ok((token, entry.item.insert(item)))
    }

    /// Fills a free entry in place: `fill` writes the item into it and says whether it did.
    /// Returns the token and the item if it did, `None` if it did not or the table is full.
    #[inline]
    pub(crate) fn insert_with<E>(
        &mut self,
        fill: impl FnOnce(&mut Option<T>) -> Result<bool, E>,
    ) -> Result<Option<(u64, &mut T)>, E> {
        let Some(&index) = self.free.last() else { return Ok(None) };
        let entry = &mut self.entries[index as usize];
        if !fill(&mut entry.item)? {
            return Ok(None);
        }
        let Some(item) = entry.item.as_mut() else { return Ok(None) };
        self.free.pop();
        entry.generation += 1;
        let token = (entry.generation << 16) | u64::from(index);
        Ok(Some((token, item)))
    }

    /// The item `token` names, if `owner` is this table and the token current.
    pub(crate) fn get(&self, owner: u64, token: u64) -> Result<&T, Refused> {
        let index = self.index(owner, token)?;
        Option::as_ref(&self.entries[index].item).ok_or(Refused::Released)
    }

    /// Takes the item `token` names out of the table.
    pub(crate) fn take(&mut self, owner: u64, token: u64) -> Result<T, Refused> {
        let index = self.index(owner, token)?;
        let item = self.entries[index].item.take().ok_or(Refused::Released)?;
        self.free.push(index as u32);
        Ok(item)
    }

    /// Takes the item `token` names out of the table and hands it to `f` (straight into the
    /// call that consumes it, with no `Result` of the item in between to copy).
    #[inline]
    pub(crate) fn take_with<R>(
        &mut self,
        owner: u64,
        token: u64,
        f: impl FnOnce(T) -> R,
    ) -> Result<R, Refused> {
        let index = self.index(owner, token)?;
        let item = self.entries[index].item.take();
        self.free.push(index as u32);
        match item {
            Some(item) => Ok(f(item)),
            None => Err(Refused::Released),
        }
    }

    /// Drops the item `token` names where it lies (a release: nothing is moved out, so
    /// nothing is copied).
    pub(crate) fn remove(&mut self, owner: u64, token: u64) -> Result<(), Refused> {
        let index = self.index(owner, token)?;
        *self.entries[index].item = None;
        self.free.push(index as u32);
        Ok(())
    }

    /// Drops every item (before what they borrow goes).
    pub(crate) fn clear(&mut self) {
        for (index, entry) in self.entries.iter_mut().enumerate() {
            if entry.item.take().is_some() {
                self.free.push(index as u32);
            }
        }
    }

    fn index(&self, owner: u64, token: u64) -> Result<usize, Refused> {
        // A zeroed struct (released, or never filled in) names nothing, whoever's it was.
        if token == 0 {
            return Err(Refused::Released);
        }
        if owner != self.owner {
            return Err(Refused::Foreign);
        }
        let index = (token & 0xffff) as usize;
        let entry = self.entries.get(index).ok_or(Refused::Released)?;
        if token >> 16 != entry.generation || entry.item.is_none() {
            return Err(Refused::Released);
        }
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_item_once() {
        let mut slots = Slots::new(2);
        let (a, _) = slots.insert("a").unwrap();
        let (b, _) = slots.insert("b").unwrap();
        assert_eq!(slots.insert("c"), Err("c"));
        assert_eq!(slots.out(), 2);
        assert_eq!(slots.get(slots.owner(), a), Ok(&"a"));
        assert_eq!(slots.take(slots.owner(), a), Ok("a"));
        assert_eq!(slots.take(slots.owner(), a), Err(Refused::Released));
        // The entry is filled again: the old token stays refused.
        let (c, _) = slots.insert("c").unwrap();
        assert_ne!(a, c);
        assert_eq!(slots.take(slots.owner(), a), Err(Refused::Released));
        assert_eq!(slots.take(slots.owner(), 0), Err(Refused::Released));
        assert_eq!(slots.take(0, 0), Err(Refused::Released));
        assert_eq!(slots.take(slots.owner(), u64::MAX), Err(Refused::Released));
        let other = Slots::<&str>::new(2);
        assert_eq!(slots.take(other.owner(), b), Err(Refused::Foreign));
        assert_eq!(slots.remove(slots.owner(), b), Ok(()));
        assert_eq!(slots.remove(slots.owner(), b), Err(Refused::Released));
        assert_eq!(slots.insert_with(|_| Ok::<_, ()>(false)), Ok(None));
        assert_eq!(slots.out(), 1);
        assert_eq!(slots.insert_with(|_| Err(7)), Err(7));
        let (e, _) =
            slots.insert_with(|item| Ok::<_, ()>(item.replace("e").is_none())).unwrap().unwrap();
        assert_eq!(slots.take(slots.owner(), e), Ok("e"));
        let (d, _) = slots.insert("d").unwrap();
        assert_eq!(slots.take_with(slots.owner(), d, str::len), Ok(1));
        assert_eq!(slots.take_with(slots.owner(), d, str::len), Err(Refused::Released));
        slots.clear();
        assert_eq!(slots.out(), 0);
        assert!(slots.has_room());
    }
}
