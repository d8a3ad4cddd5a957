//! A network of namespaces for tests that partition real processes: one network namespace per
//! node, a veth link between every two nodes, and a veth link from each node to the test's own
//! namespace for clients. Taking a link between two nodes down partitions them while clients
//! still reach both, as a switch failing between two racks would.
//!
//! Each node also has an address of its own ([`Topology::node_ip`], on its loopback device) that
//! every other node reaches over their direct link (a host route through it; no namespace
//! forwards, so a link down cuts exactly the two nodes it joins). Nodes name each other by these
//! addresses, the same from everywhere, as an address book shared by all nodes needs.
//!
//! Everything is created by [`Topology::create`] and removed when the topology is dropped
//! (deleting a namespace deletes its links). It needs root and the `ip` tool; where either is
//! missing, `create` says why, and the test that asked reports that it skipped.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

/// Runs `ip` with `args`; the error carries its stderr.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The namespaces and links of one test's cluster.
pub struct Topology {
    nodes: usize,
    /// `ns[i]`: node i's namespace.
    ns: Vec<String>,
    /// A short id of this topology, in every name it creates.
    tag: String,
    /// The second and third octets of the clients' addresses (10.a.b.x).
    client_net: (u8, u8),
}

static TOPOLOGIES: AtomicU32 = AtomicU32::new(0);

impl Topology {
    /// Creates `nodes` namespaces, fully linked, each linked to this namespace too.
    ///
    /// # Errors
    ///
    /// Why it cannot: not root, no `ip`, or a step failed (what was created is removed).
    pub fn create(nodes: usize) -> Result<Self, String> {
        assert!((2..=9).contains(&nodes), "2 to 9 nodes");
        let run = std::process::id().wrapping_mul(31) ^ TOPOLOGIES.fetch_add(1, Relaxed);
        let tag = format!("{:05x}", run & 0xF_FFFF);
        let client_net = (150 + (run % 100) as u8, ((run / 100) % 256) as u8);
        let topology = Self {
            nodes,
            ns: (0..nodes).map(|i| format!("zr{tag}n{i}")).collect(),
            tag,
            client_net,
        };
        topology.build()?;
        Ok(topology)
    }

    fn build(&self) -> Result<(), String> {
        for ns in &self.ns {
            ip(&["netns", "add", ns])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        for i in 0..self.nodes {
            for j in i + 1..self.nodes {
                let (a, b) = (self.peer_if(i, j), self.peer_if(j, i));
                ip(&["link", "add", &a, "type", "veth", "peer", "name", &b])?;
                for (node, ifname, other) in [(i, &a, j), (j, &b, i)] {
                    ip(&["link", "set", ifname, "netns", &self.ns[node]])?;
                    let addr = format!("{}/30", self.peer_ip(node, other));
                    ip(&["-n", &self.ns[node], "addr", "add", &addr, "dev", ifname])?;
                    ip(&["-n", &self.ns[node], "link", "set", ifname, "up"])?;
                }
                self.route(i, j)?;
            }
            let own = format!("{}/32", self.node_ip(i));
            ip(&["-n", &self.ns[i], "addr", "add", &own, "dev", "lo"])?;
            let (outside, inside) = (format!("zr{}c{i}", self.tag), format!("zr{}d{i}", self.tag));
            ip(&[
                "link", "add", &outside, "type", "veth", "peer", "name", &inside,
            ])?;
            ip(&["link", "set", &inside, "netns", &self.ns[i]])?;
            let (a, b) = (self.client_net.0.to_string(), self.client_net.1.to_string());
            let base = (i * 4) as u8;
            ip(&[
                "addr",
                "add",
                &format!("10.{a}.{b}.{}/30", base + 1),
                "dev",
                &outside,
            ])?;
            ip(&["link", "set", &outside, "up"])?;
            let node_side = format!("10.{a}.{b}.{}/30", base + 2);
            ip(&["-n", &self.ns[i], "addr", "add", &node_side, "dev", &inside])?;
            ip(&["-n", &self.ns[i], "link", "set", &inside, "up"])?;
        }
        Ok(())
    }

    /// Node `i`'s interface on its link to node `j`.
    fn peer_if(&self, i: usize, j: usize) -> String {
        format!("zr{}p{i}{j}", self.tag)
    }

    /// The number of the link between `i` and `j` (the same both ways).
    fn link_number(&self, i: usize, j: usize) -> usize {
        let (lo, hi) = (i.min(j), i.max(j));
        lo * self.nodes + hi
    }

    /// The address node `i` has on its link to node `j`: where `j` reaches `i`.
    pub fn peer_ip(&self, i: usize, j: usize) -> Ipv4Addr {
        let link = self.link_number(i, j) as u8;
        let side = if i < j { 1 } else { 2 };
        Ipv4Addr::new(10, 0, link, side)
    }

    /// The number of namespaces (nodes' places, spare ones included).
    pub fn len(&self) -> usize {
        self.nodes
    }

    /// Node `i`'s own address: where every other node reaches it, over their direct link.
    pub fn node_ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 1, 0, i as u8 + 1)
    }

    /// The host routes between nodes `i` and `j`'s own addresses over their link (again after
    /// the link was down: taking a device down drops the routes through it).
    fn route(&self, i: usize, j: usize) -> Result<(), String> {
        for (node, other) in [(i, j), (j, i)] {
            let to = format!("{}/32", self.node_ip(other));
            let via = self.peer_ip(other, node).to_string();
            let dev = self.peer_if(node, other);
            ip(&[
                "-n",
                &self.ns[node],
                "route",
                "replace",
                &to,
                "via",
                &via,
                "dev",
                &dev,
            ])?;
        }
        Ok(())
    }

    /// Where the test (and its clients) reach node `i`.
    pub fn client_ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, self.client_net.0, self.client_net.1, (i * 4 + 2) as u8)
    }

    /// The command prefix that runs a program in node `i`'s namespace.
    pub fn exec_in(&self, i: usize) -> Vec<String> {
        ["ip", "netns", "exec", &self.ns[i]]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    /// Brings the link between nodes `i` and `j` up or down (both of its ends).
    ///
    /// # Panics
    ///
    /// If `ip` fails: a test cannot go on with a network it does not control.
    pub fn set_link(&self, i: usize, j: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        for (node, other) in [(i, j), (j, i)] {
            let ifname = self.peer_if(node, other);
            ip(&["-n", &self.ns[node], "link", "set", &ifname, state]).expect("link state");
        }
        if up {
            self.route(i, j).expect("routes over a link");
        }
    }

    /// Splits the nodes into `groups`: links within a group up, links across groups down. A
    /// node in no group is cut off from every other node (clients still reach it).
    pub fn partition(&self, groups: &[Vec<usize>]) {
        let group = |i: usize| groups.iter().position(|g| g.contains(&i));
        for i in 0..self.nodes {
            for j in i + 1..self.nodes {
                let same = group(i).is_some() && group(i) == group(j);
                self.set_link(i, j, same);
            }
        }
    }

    /// Brings every link between nodes up.
    pub fn heal(&self) {
        self.partition(&[(0..self.nodes).collect()]);
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in &self.ns {
            let _ = ip(&["netns", "del", ns]);
        }
        // The client links' outer ends went with their inner ends' namespaces.
    }
}
