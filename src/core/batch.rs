//! Splitting a run into batches of Deployments.
//!
//! A batch is planned (and, for `run`, written) before the next one is read,
//! so at most one batch's Secret values are in memory, however many Secrets
//! the cluster holds. Batches must not change the plan: two Deployments
//! that want the same location are a conflict for both, and that is only
//! seen when both are planned together. So Deployments that share a
//! location always land in the same batch.

use std::collections::BTreeMap;

/// Groups items (Deployments, each with the locations it wants) into
/// batches of about `max_paths` locations, in their original order. Items
/// sharing a location are never split; such a group may exceed the limit.
/// An item without locations counts as one.
pub fn batches<L: Ord>(locations: &[Vec<L>], max_paths: usize) -> Vec<Vec<usize>> {
    let mut root: Vec<usize> = (0..locations.len()).collect();
    let mut first_wanted_by: BTreeMap<&L, usize> = BTreeMap::new();
    for (item, wanted) in locations.iter().enumerate() {
        for location in wanted {
            match first_wanted_by.get(location) {
                Some(&other) => {
                    let (a, b) = (find(&mut root, item), find(&mut root, other));
                    // The smaller index is the group's root, so groups keep
                    // the order of their first member.
                    root[a.max(b)] = a.min(b);
                }
                None => {
                    first_wanted_by.insert(location, item);
                }
            }
        }
    }

    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for item in 0..locations.len() {
        let r = find(&mut root, item);
        groups.entry(r).or_default().push(item);
    }

    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut size = 0;
    for members in groups.into_values() {
        let weight: usize = members.iter().map(|&i| locations[i].len().max(1)).sum();
        if !current.is_empty() && size + weight > max_paths {
            out.push(std::mem::take(&mut current));
            size = 0;
        }
        current.extend(members);
        size += weight;
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
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
        let together = got
            .iter()
            .filter(|b| b.contains(&0) || b.contains(&3) || b.contains(&4))
            .count();
        assert_eq!(together, 1);
    }

    #[test]
    fn every_item_appears_exactly_once() {
        let locations: Vec<Vec<u32>> = (0..50u32).map(|i| vec![i % 7, 100 + i]).collect();
        let mut all: Vec<usize> = batches(&locations, 5).into_iter().flatten().collect();
        all.sort_unstable();
        assert_eq!(all, (0..50).collect::<Vec<_>>());
    }
}
