//! Splitting a run into batches of Deployments.
//!
//! A batch is planned (and, for `run`, written) before the next one is read,
//! so at most one batch's Secret values are in memory, however many Secrets
//! the cluster holds. Batches must not change the plan: two Deployments
//! that want the same location are a conflict for both, and that is only
//! seen when both are planned together. So Deployments that share a
//! location always land in the same batch.
//!
//! Batches are counted in paths but sized for bytes: the values of a path
//! range from a few bytes to a MiB, so each batch's size follows from the
//! bytes per path the previous batch held ([`next_limit`]).

use std::collections::{BTreeMap, VecDeque};

/// Hands out batches of items (Deployments, each with the locations it
/// wants), in their original order. Items sharing a location are never
/// split; such a group may exceed the limit. An item without locations
/// counts as one path.
#[derive(Debug)]
pub struct Batcher {
    /// Every item, the members of each group together, groups in order of
    /// their first member. Flat, not a list per group: a run holds the
    /// batcher for its whole batch phase, and most groups are one item.
    members: Vec<usize>,
    /// The groups not handed out yet: each one's end in `members` and
    /// its weight in paths.
    groups: VecDeque<(usize, usize)>,
    /// Where the next group starts in `members`.
    start: usize,
}

impl Batcher {
    pub fn new<L: Ord, S: AsRef<[L]>>(locations: &[S]) -> Self {
        let mut root: Vec<usize> = (0..locations.len()).collect();
        let mut first_wanted_by: BTreeMap<&L, usize> = BTreeMap::new();
        for (item, wanted) in locations.iter().enumerate() {
            for location in wanted.as_ref() {
                match first_wanted_by.get(location) {
                    Some(&other) => {
                        let (a, b) = (find(&mut root, item), find(&mut root, other));
                        // The smaller index is the group's root, so groups
                        // keep the order of their first member.
                        root[a.max(b)] = a.min(b);
                    }
                    None => {
                        first_wanted_by.insert(location, item);
                    }
                }
            }
        }
        drop(first_wanted_by);
        for item in 0..root.len() {
            root[item] = find(&mut root, item);
        }
        let mut members: Vec<usize> = (0..locations.len()).collect();
        members.sort_by_key(|&i| (root[i], i));
        let mut groups = VecDeque::new();
        let mut weight = 0;
        for (at, &item) in members.iter().enumerate() {
            weight += locations[item].as_ref().len().max(1);
            let last_of_group = members
                .get(at + 1)
                .is_none_or(|&next| root[next] != root[item]);
            if last_of_group {
                groups.push_back((at + 1, weight));
                weight = 0;
            }
        }
        Self {
            members,
            groups,
            start: 0,
        }
    }

    /// The next batch, of at most `max_paths` paths unless a single group
    /// is larger; `None` when every item was handed out.
    pub fn next_batch(&mut self, max_paths: usize) -> Option<Vec<usize>> {
        let mut end = self.start;
        let mut size = 0;
        while let Some(&(group_end, weight)) = self.groups.front() {
            if end > self.start && size + weight > max_paths {
                break;
            }
            self.groups.pop_front();
            end = group_end;
            size += weight;
        }
        let batch = self.members[self.start..end].to_vec();
        self.start = end;
        (!batch.is_empty()).then_some(batch)
    }
}

/// The next batch's size in paths, so that it holds about `budget_bytes`
/// of Secret values, judged by the last batch (`last_paths` paths holding
/// `last_bytes`). Between `min` and `max`.
pub fn next_limit(
    last_paths: usize,
    last_bytes: usize,
    budget_bytes: usize,
    min: usize,
    max: usize,
) -> usize {
    let per_path = last_bytes.div_ceil(last_paths.max(1)).max(1);
    (budget_bytes / per_path).clamp(min.min(max), max)
}

fn find(root: &mut [usize], mut i: usize) -> usize {
    while root[i] != i {
        root[i] = root[root[i]];
        i = root[i];
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batches<L: Ord>(locations: &[Vec<L>], max: usize) -> Vec<Vec<usize>> {
        let mut batcher = Batcher::new(locations);
        std::iter::from_fn(|| batcher.next_batch(max)).collect()
    }

    #[test]
    fn empty_input_gives_no_batches() {
        assert!(batches::<u32>(&[], 10).is_empty());
    }

    #[test]
    fn fills_batches_in_order_up_to_the_limit() {
        let locations = vec![vec![1, 2], vec![3, 4], vec![5, 6], vec![7]];
        assert_eq!(
            batches(&locations, 4),
            vec![vec![0, 1], vec![2, 3]],
            "two Deployments of two paths fill a batch of four"
        );
        assert_eq!(
            batches(&locations, 1),
            vec![vec![0], vec![1], vec![2], vec![3]]
        );
        assert_eq!(batches(&locations, 100), vec![vec![0, 1, 2, 3]]);
    }

    #[test]
    fn the_limit_may_change_between_batches() {
        let locations: Vec<Vec<u32>> = (0..6).map(|i| vec![i]).collect();
        let mut batcher = Batcher::new(&locations);
        assert_eq!(batcher.next_batch(1), Some(vec![0]));
        assert_eq!(batcher.next_batch(3), Some(vec![1, 2, 3]));
        assert_eq!(batcher.next_batch(10), Some(vec![4, 5]));
        assert_eq!(batcher.next_batch(10), None);
    }

    #[test]
    fn items_without_locations_count_as_one() {
        let locations: Vec<Vec<u32>> = vec![vec![], vec![], vec![], vec![1]];
        assert_eq!(batches(&locations, 2), vec![vec![0, 1], vec![2, 3]]);
    }

    #[test]
    fn items_sharing_a_location_stay_together_even_far_apart() {
        // 0 and 3 share location 9; 3 and 4 share 8: {0, 3, 4} is one group.
        let locations = vec![vec![9], vec![1], vec![2], vec![9, 8], vec![8], vec![5]];
        let got = batches(&locations, 2);
        assert_eq!(got, vec![vec![0, 3, 4], vec![1, 2], vec![5]]);
    }

    #[test]
    fn every_item_appears_exactly_once() {
        let locations: Vec<Vec<u32>> = (0..50u32).map(|i| vec![i % 7, 100 + i]).collect();
        let mut all: Vec<usize> = batches(&locations, 5).into_iter().flatten().collect();
        all.sort_unstable();
        assert_eq!(all, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn batch_size_follows_the_value_budget() {
        const MIB: usize = 1 << 20;
        // Small values: capped by the maximum.
        assert_eq!(next_limit(100, 100 * 160, 8 * MIB, 32, 500), 500);
        // 40 KiB per path: 8 MiB holds 204 paths.
        assert_eq!(next_limit(500, 500 * 40 * 1024, 8 * MIB, 32, 500), 204);
        // 1 MiB per path: never below the minimum.
        assert_eq!(next_limit(10, 10 * MIB, 8 * MIB, 32, 500), 32);
        // Nothing read (all Secrets missing): the maximum.
        assert_eq!(next_limit(0, 0, 8 * MIB, 32, 500), 500);
        // A maximum below the minimum wins (`--batch-size 1`).
        assert_eq!(next_limit(10, 10 * MIB, 8 * MIB, 32, 1), 1);
    }
}
