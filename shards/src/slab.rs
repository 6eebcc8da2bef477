//! A shard-local slab: values stored under small reusable indices. The shard
//! keeps three such tables (drain-signal wakers, epoll registrations keyed by
//! their token, sweeper deadlines); all share this one free list. Freed
//! indices are reused last-in first-out, so a table stays as large as its
//! peak use, never as large as its total use.

use std::ops::{Index, IndexMut};

/// Values under reusable indices.
pub struct Slab<T> {
    entries: Vec<Option<T>>,
    free: Vec<usize>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T> Slab<T> {
    /// Stores `value`; returns its index (a freed one if any).
    pub fn insert(&mut self, value: T) -> usize {
        match self.free.pop() {
            Some(i) => {
                debug_assert!(self.entries[i].is_none(), "free index {i} is vacant");
                self.entries[i] = Some(value);
                i
            }
            None => {
                self.entries.push(Some(value));
                self.entries.len() - 1
            }
        }
    }

    /// Frees `index`, returning its value (`None` if it was vacant).
    pub fn remove(&mut self, index: usize) -> Option<T> {
        let value = self.entries.get_mut(index)?.take();
        if value.is_some() {
            self.free.push(index);
        }
        value
    }

    /// The value at `index`, if occupied.
    pub fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        self.entries.get_mut(index)?.as_mut()
    }

    /// Occupied values.
    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().flatten()
    }

    /// Occupied values, mutably.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.entries.iter_mut().flatten()
    }

    /// Occupied indices.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len() - self.free.len()
    }

    /// Indices ever allocated (occupied or free): the table's peak size.
    #[cfg(test)]
    pub fn allocated(&self) -> usize {
        self.entries.len()
    }
}

/// Indexing an index its owner holds; a vacant index is a programmer error.
impl<T> Index<usize> for Slab<T> {
    type Output = T;

    fn index(&self, index: usize) -> &T {
        match self.entries.get(index) {
            Some(Some(value)) => value,
            _ => panic!("slab index {index} is vacant"),
        }
    }
}

impl<T> IndexMut<usize> for Slab<T> {
    fn index_mut(&mut self, index: usize) -> &mut T {
        match self.entries.get_mut(index) {
            Some(Some(value)) => value,
            _ => panic!("slab index {index} is vacant"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_freed_indices_last_in_first_out() {
        let mut s = Slab::default();
        assert_eq!((s.insert('a'), s.insert('b'), s.insert('c')), (0, 1, 2));
        assert_eq!(s.remove(0), Some('a'));
        assert_eq!(s.remove(2), Some('c'));
        assert_eq!(s.remove(2), None, "a second remove frees nothing");
        assert_eq!(s.len(), 1);
        assert_eq!(s.insert('d'), 2);
        assert_eq!(s.insert('e'), 0);
        assert_eq!(s.insert('f'), 3);
        assert_eq!(s.allocated(), 4);
        assert_eq!(s.iter().collect::<String>(), "ebdf");
        s[1] = 'B';
        assert_eq!(s.get_mut(1), Some(&mut 'B'));
        assert_eq!(s.get_mut(9), None);
    }
}
