//! Top-N: the `n` highest-scoring keys, ties broken by key so results are deterministic (the
//! same input always ranks the same way, which keeps re-processing after a crash idempotent).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Keeps the `n` best `(score, key)` pairs offered to it, in O(log n) per offer.
#[derive(Debug, Clone)]
pub struct TopN<K: Ord> {
    n: usize,
    // A min-heap of the best n: the root is the weakest, evicted by anything better.
    heap: BinaryHeap<Reverse<(i64, Reverse<K>)>>,
}

impl<K: Ord + Clone> TopN<K> {
    pub fn new(n: usize) -> Self {
        TopN {
            n,
            heap: BinaryHeap::with_capacity(n + 1),
        }
    }

    /// Considers `key` with `score`; a key must be offered once (scores are not merged).
    pub fn offer(&mut self, key: K, score: i64) {
        if self.n == 0 {
            return;
        }
        self.heap.push(Reverse((score, Reverse(key))));
        if self.heap.len() > self.n {
            self.heap.pop();
        }
    }

    /// Best first; equal scores in ascending key order.
    pub fn into_sorted(self) -> Vec<(K, i64)> {
        let mut items: Vec<(i64, Reverse<K>)> = self.heap.into_iter().map(|Reverse(x)| x).collect();
        items.sort_by(|a, b| b.cmp(a));
        items
            .into_iter()
            .map(|(score, Reverse(key))| (key, score))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_n_best_in_order() {
        let mut top = TopN::new(3);
        for (key, score) in [("a", 5), ("b", 9), ("c", 1), ("d", 7), ("e", 9)] {
            top.offer(key, score);
        }
        assert_eq!(top.into_sorted(), vec![("b", 9), ("e", 9), ("d", 7)]);
    }

    #[test]
    fn fewer_than_n() {
        let mut top = TopN::new(10);
        top.offer(1u32, 3);
        assert_eq!(top.into_sorted(), vec![(1, 3)]);
        let mut none = TopN::new(0);
        none.offer(1u32, 3);
        assert!(none.into_sorted().is_empty());
    }
}
