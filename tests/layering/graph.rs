//! Import cycles: the graphs are a few dozen modules, so plain
//! reachability is simpler than Tarjan and fast enough.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

pub type Graph = BTreeMap<String, BTreeSet<String>>;

/// Modules that reach one another through imports.
pub struct Tangle {
    pub members: Vec<String>,
    /// One shortest cycle among them, as `[a, b, a]`.
    pub example: Vec<String>,
}

/// Every tangle, each reported once with one example: one stray import
/// can close a dozen cycles, and a list of them all would hide it.
pub fn tangles(graph: &Graph) -> Vec<Tangle> {
    let mut done: BTreeSet<&String> = BTreeSet::new();
    let mut out = Vec::new();
    for node in graph.keys() {
        if done.contains(node) || shortest_path(graph, node, node).is_none() {
            continue;
        }
        let members: Vec<&String> = graph
            .keys()
            .filter(|other| {
                shortest_path(graph, node, other).is_some()
                    && shortest_path(graph, other, node).is_some()
            })
            .collect();
        let example = members
            .iter()
            .filter_map(|m| shortest_path(graph, m, m))
            .min_by_key(Vec::len)
            .unwrap_or_default();
        done.extend(members.iter().copied());
        out.push(Tangle {
            members: members.into_iter().cloned().collect(),
            example,
        });
    }
    out
}

/// Breadth-first, at least one edge long, so `from == to` finds a cycle.
fn shortest_path(graph: &Graph, from: &str, to: &str) -> Option<Vec<String>> {
    let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue: VecDeque<&str> = VecDeque::from([from]);
    while let Some(at) = queue.pop_front() {
        for next in graph.get(at).into_iter().flatten() {
            if next == to {
                let mut path = vec![to.to_owned(), at.to_owned()];
                let mut back = at;
                while back != from {
                    back = parent[back];
                    path.push(back.to_owned());
                }
                path.reverse();
                return Some(path);
            }
            if next != from && !parent.contains_key(next.as_str()) {
                parent.insert(next, at);
                queue.push_back(next);
            }
        }
    }
    None
}
