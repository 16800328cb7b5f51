//! Taint label sets: the provenance labels a message carries, as a set of dense ids. What an id
//! stands for (the user, a tool's output, a fault) is the protocol's business
//! (`protocol::labels`); the kernel only stores, unites and tests sets.
//!
//! Ids below 64 live inline in one word (no allocation per message, 16 bytes in every
//! envelope); larger scenarios spill into a sorted vector.

/// A set of label ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels {
    low: u64,
    /// Ids of 64 and above, sorted and unique.
    high: Option<Box<[u32]>>,
}

impl Labels {
    /// The empty set.
    pub const EMPTY: Labels = Labels { low: 0, high: None };

    pub fn is_empty(&self) -> bool {
        self.low == 0 && self.high.is_none()
    }

    fn high(&self) -> &[u32] {
        self.high.as_deref().unwrap_or(&[])
    }

    pub fn insert(&mut self, id: u32) {
        if id < 64 {
            self.low |= 1u64 << id;
            return;
        }
        // Rare (scenarios with 64 or more sources): rebuild the sorted slice.
        if let Err(at) = self.high().binary_search(&id) {
            let mut high = self.high().to_vec();
            high.insert(at, id);
            self.high = Some(high.into_boxed_slice());
        }
    }

    pub fn contains(&self, id: u32) -> bool {
        if id < 64 {
            self.low & (1u64 << id) != 0
        } else {
            self.high().binary_search(&id).is_ok()
        }
    }

    /// Whether the two sets share a label.
    pub fn intersects(&self, other: &Labels) -> bool {
        self.low & other.low != 0 || self.high().iter().any(|id| other.high().binary_search(id).is_ok())
    }

    /// Adds every label of `other`.
    pub fn union_with(&mut self, other: &Labels) {
        self.low |= other.low;
        for id in other.high() {
            self.insert(*id);
        }
    }

    /// The ids in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        let mut low = self.low;
        std::iter::from_fn(move || {
            (low != 0).then(|| {
                let id = low.trailing_zeros();
                low &= low - 1;
                id
            })
        })
        .chain(self.high().iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_hold_low_and_high_ids_in_order() {
        let mut labels = Labels::default();
        assert!(labels.is_empty());
        for id in [300, 3, 127, 128, 3, 0] {
            labels.insert(id);
        }
        assert_eq!(labels.iter().collect::<Vec<_>>(), [0, 3, 127, 128, 300]);
        assert!(labels.contains(300) && labels.contains(0) && !labels.contains(4) && !labels.contains(129));
        let mut other = Labels::default();
        other.insert(5);
        other.insert(200);
        labels.union_with(&other);
        assert_eq!(labels.iter().collect::<Vec<_>>(), [0, 3, 5, 127, 128, 200, 300]);
    }
}
