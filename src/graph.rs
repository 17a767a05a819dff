//! The service dependency graph: which services must be started before which.
//!
//! Built from plain names and edges (a service and the services it needs started first, from
//! `depends_on` and `network_mode: service:NAME`), so it stays independent of the config
//! types. Every output follows file order, never hash order, so plans and messages are
//! stable from one run to the next. Construction is linear in services plus edges, since it
//! runs on every invocation.

use indexmap::IndexSet;
use petgraph::algo::TarjanScc;
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::VecDeque;

use crate::suggest::nearest;

/// Services and the services each one needs started first (`depends_on`,
/// `network_mode: service:NAME`).
#[derive(Debug, Clone, Default)]
pub struct ServiceGraph {
    /// Service names in file order; a service's position here is its id everywhere below.
    names: IndexSet<String>,
    /// Direct dependencies of each service, in file order, without duplicates.
    deps: Adjacency,
    /// Direct dependents of each service, in file order.
    rdeps: Adjacency,
    /// Start layer of each service: 0 with no dependencies, else one more than its deepest.
    layer: Vec<usize>,
    /// All service ids in start order: by layer, file order within a layer.
    order: Vec<usize>,
    /// Where each layer begins in `order`, plus `order.len()` at the end.
    layer_starts: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    /// `service` depends on `dependency`, which is not a service of the project.
    #[error(
        "service \"{service}\" depends on \"{dependency}\", which is not a service in this project{}",
        did_you_mean(.suggestion)
    )]
    UnknownDependency { service: String, dependency: String, suggestion: Option<String> },
    /// The services in `cycle`, in dependency order, with the first repeated at the end.
    #[error("dependency cycle: {}", .cycle.join(" -> "))]
    Cycle { cycle: Vec<String> },
    /// A service was asked for by name, and the project has no service of that name.
    #[error("\"{name}\" is not a service in this project{}", did_you_mean(.suggestion))]
    UnknownService { name: String, suggestion: Option<String> },
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!(" (did you mean \"{s}\"?)"),
        None => String::new(),
    }
}

impl ServiceGraph {
    /// `services` in file order; each with its dependencies (in file order too).
    ///
    /// A name listed twice is one service whose dependencies are merged; a dependency listed
    /// twice is one edge. The first unknown dependency (in file order) is reported before
    /// any cycle.
    pub fn new<'a, I, D>(services: I) -> Result<Self, GraphError>
    where
        I: IntoIterator<Item = (&'a str, D)>,
        D: IntoIterator<Item = &'a str>,
    {
        // All names first, since a dependency may be declared further down the file. The
        // declared edges go into one flat list rather than a Vec per service: this runs on
        // every invocation and allocations dominate its cost.
        let mut names = IndexSet::new();
        let mut declared: Vec<(usize, &'a str)> = Vec::new();
        for (name, deps) in services {
            let (id, _) = names.insert_full(name.to_owned());
            declared.extend(deps.into_iter().map(|dep| (id, dep)));
        }

        let n = names.len();
        let mut edges = Vec::with_capacity(declared.len());
        for (service, dependency) in declared {
            let Some(d) = names.get_index_of(dependency) else {
                return Err(GraphError::UnknownDependency {
                    service: names[service].clone(),
                    dependency: dependency.to_owned(),
                    // Never the service itself: depending on yourself is no fix.
                    suggestion: nearest(
                        dependency,
                        names
                            .iter()
                            .enumerate()
                            .filter(|&(id, _)| id != service)
                            .map(|(_, n)| n.as_str()),
                    )
                    .map(str::to_owned),
                });
            };
            edges.push((service, d));
        }
        let mut deps = Adjacency::new(n, &edges);
        deps.dedup();

        let layer = layers_or_cycle(&names, &deps)?;
        // Dependents listed by increasing service id, i.e. file order.
        let reversed: Vec<(usize, usize)> =
            (0..n).flat_map(|s| deps.of(s).iter().map(move |&d| (d, s))).collect();
        let rdeps = Adjacency::new(n, &reversed);

        // Counting sort of ids by layer; stable, so file order within each layer.
        let depth = layer.iter().max().map_or(0, |&deepest| deepest + 1);
        let by_layer: Vec<(usize, usize)> = layer.iter().copied().zip(0..n).collect();
        let Adjacency { offsets: layer_starts, targets: order } = Adjacency::new(depth, &by_layer);
        Ok(Self { names, deps, rdeps, layer, order, layer_starts })
    }

    /// Start order: layers of services whose dependencies are all in earlier layers; services
    /// in one layer are independent and may start in parallel. Within a layer, file order.
    pub fn start_layers(&self) -> Vec<Vec<String>> {
        self.layer_ids().map(|layer| self.names_of(layer)).collect()
    }

    /// Stop order: the start layers reversed (dependents stop before what they depend on).
    pub fn stop_layers(&self) -> Vec<Vec<String>> {
        self.layer_ids().rev().map(|layer| self.names_of(layer)).collect()
    }

    /// The named services plus everything they depend on, transitively, in start order
    /// (flattened layers).
    pub fn with_dependencies(&self, names: &[&str]) -> Result<Vec<String>, GraphError> {
        let roots = names
            .iter()
            .map(|&name| {
                self.names.get_index_of(name).ok_or_else(|| GraphError::UnknownService {
                    name: name.to_owned(),
                    suggestion: nearest(name, self.names.iter().map(String::as_str))
                        .map(str::to_owned),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.closure(roots, &self.deps, true))
    }

    /// Services that depend on `name`, transitively, in start order (what must restart or stop
    /// when it does). Not including `name`; empty for an unknown name.
    pub fn dependents(&self, name: &str) -> Vec<String> {
        match self.names.get_index_of(name) {
            Some(id) => self.closure(vec![id], &self.rdeps, false),
            None => Vec::new(),
        }
    }

    /// Whether `name` is a service of the graph.
    pub fn contains(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// Direct dependencies of a service, in file order; empty for an unknown name.
    pub fn dependencies(&self, name: &str) -> Vec<String> {
        match self.names.get_index_of(name) {
            Some(id) => self.names_of(self.deps.of(id)),
            None => Vec::new(),
        }
    }

    fn layer_ids(&self) -> impl DoubleEndedIterator<Item = &[usize]> {
        self.layer_starts.windows(2).map(|w| &self.order[w[0]..w[1]])
    }

    fn names_of(&self, ids: &[usize]) -> Vec<String> {
        ids.iter().map(|&id| self.names[id].clone()).collect()
    }

    /// Everything reachable from `roots` along `edges` (and the roots themselves if
    /// `keep_roots`), in start order. Work is proportional to the part of the graph reached,
    /// plus one flag per service.
    fn closure(&self, roots: Vec<usize>, edges: &Adjacency, keep_roots: bool) -> Vec<String> {
        let mut reached = vec![false; self.names.len()];
        let mut found = Vec::new();
        if keep_roots {
            for &root in &roots {
                if !reached[root] {
                    reached[root] = true;
                    found.push(root);
                }
            }
        }
        let mut stack = roots;
        while let Some(id) = stack.pop() {
            for &next in edges.of(id) {
                if !reached[next] {
                    reached[next] = true;
                    found.push(next);
                    stack.push(next);
                }
            }
        }
        found.sort_unstable_by_key(|&id| (self.layer[id], id));
        self.names_of(&found)
    }
}

/// Adjacency lists for all services in two flat vectors: the targets of service `s` are
/// `targets[offsets[s]..offsets[s + 1]]`.
#[derive(Debug, Clone, Default)]
struct Adjacency {
    offsets: Vec<usize>,
    targets: Vec<usize>,
}

impl Adjacency {
    /// Groups `(from, to)` pairs by `from` (a counting sort), keeping their order within each
    /// group. Every `from` must be below `n`.
    fn new(n: usize, pairs: &[(usize, usize)]) -> Self {
        let mut offsets = vec![0; n + 1];
        for &(from, _) in pairs {
            offsets[from + 1] += 1;
        }
        for i in 0..n {
            offsets[i + 1] += offsets[i];
        }
        let mut next = offsets.clone();
        let mut targets = vec![0; pairs.len()];
        for &(from, to) in pairs {
            targets[next[from]] = to;
            next[from] += 1;
        }
        Self { offsets, targets }
    }

    /// Drops repeated targets within each list, keeping first occurrences (a dependency named
    /// twice, or by both `depends_on` and `network_mode`, is one edge). Targets must be below
    /// the number of lists, as service ids are.
    fn dedup(&mut self) {
        let n = self.offsets.len() - 1;
        // `seen_by[t] == s` once list s has kept t: O(1) checks without a set per list.
        let mut seen_by = vec![usize::MAX; n];
        let mut kept = 0;
        for s in 0..n {
            let (start, end) = (self.offsets[s], self.offsets[s + 1]);
            self.offsets[s] = kept;
            for i in start..end {
                let target = self.targets[i];
                if seen_by[target] != s {
                    seen_by[target] = s;
                    self.targets[kept] = target;
                    kept += 1;
                }
            }
        }
        self.offsets[n] = kept;
        self.targets.truncate(kept);
    }

    fn of(&self, id: usize) -> &[usize] {
        &self.targets[self.offsets[id]..self.offsets[id + 1]]
    }
}

/// The start layer of every service, or the first cycle in file order.
fn layers_or_cycle(names: &IndexSet<String>, deps: &Adjacency) -> Result<Vec<usize>, GraphError> {
    let n = names.len();
    let mut graph = DiGraph::<(), (), u32>::with_capacity(n, deps.targets.len());
    for _ in 0..n {
        graph.add_node(());
    }
    for service in 0..n {
        for &d in deps.of(service) {
            graph.add_edge(NodeIndex::new(service), NodeIndex::new(d), ());
        }
    }

    // Edges point from a service to its dependencies, so Tarjan's reverse topological order
    // of components lists dependencies before their dependents: one pass settles the layers.
    let mut layer = vec![0usize; n];
    let mut component = vec![0usize; n];
    let mut on_cycle = vec![false; n];
    let mut components = 0;
    TarjanScc::new().run(&graph, |scc: &[NodeIndex]| {
        for node in scc {
            let id = node.index();
            component[id] = components;
            on_cycle[id] = scc.len() > 1 || deps.of(id).contains(&id);
            layer[id] = deps.of(id).iter().map(|&d| layer[d] + 1).max().unwrap_or(0);
        }
        components += 1;
    });

    match on_cycle.iter().position(|&cyclic| cyclic) {
        None => Ok(layer),
        Some(start) => {
            let path = cycle_through(start, deps, |id| component[id] == component[start]);
            let mut cycle: Vec<String> = path.iter().map(|&id| names[id].clone()).collect();
            cycle.push(names[start].clone());
            Err(GraphError::Cycle { cycle })
        }
    }
}

/// The shortest dependency path from `start` back to itself, staying within `start`'s
/// strongly connected component (which guarantees there is one). Breadth-first with
/// dependencies in file order, so among equally short cycles the one reported is fixed.
/// Returns the path without the closing repeat of `start`.
fn cycle_through(start: usize, deps: &Adjacency, in_scc: impl Fn(usize) -> bool) -> Vec<usize> {
    let mut parent = vec![usize::MAX; deps.offsets.len() - 1];
    let mut queue = VecDeque::from([start]);
    parent[start] = start;
    while let Some(id) = queue.pop_front() {
        for &d in deps.of(id) {
            if d == start {
                let mut path = vec![id];
                let mut at = id;
                while at != start {
                    at = parent[at];
                    path.push(at);
                }
                path.reverse();
                return path;
            }
            if parent[d] == usize::MAX && in_scc(d) {
                parent[d] = id;
                queue.push_back(d);
            }
        }
    }
    unreachable!("a service in a cyclic component has a path back to itself")
}

#[cfg(test)]
mod tests;
