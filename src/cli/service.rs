//! The key-value service's commands: `init` makes a new cluster's node's data directory
//! ([`init`]), `certs` the certificates of its links ([`certs`]), `serve` runs one node
//! ([`serve`]), `kv` carries out one client operation, or prints the nodes' status ([`kv`]).

use std::io::{self, IsTerminal, Write};
use std::time::Duration;

use zeroraft_engine::Role;
use zeroraft_kv::protocol::{MembersInfo, NodeStatus, Request, Response};
use zeroraft_kv::serve::{Joined, NodeOptions, ServeNode};
use zeroraft_kv::{ClientOptions, KvClient, ReadMode};
use zeroraft_storage::FileStorage;

use zeroraft_transport::tcp::{Authority, ClientRole, ClientTls, PeerTls, ServiceTls};

use super::args::{
    AdminArgs, AdminOp, CertsArgs, ClientSecurity, InitArgs, KvArgs, KvOp, ServeArgs, StorageKind,
};
use super::{Failure, Stop};

/// How often `serve` looks for a stop signal and for its node having stopped on its own.
const POLL: Duration = Duration::from_millis(50);

/// Initializes one node's data directory for a new cluster, with a random cluster id unless
/// one is given (then printed, for the other nodes' `init`).
pub fn init(args: &InitArgs) -> Result<(), Failure> {
    let Some(peers) = &args.peers else {
        return init_joined(args);
    };
    let cluster = args.cluster.unwrap_or_else(|| fastrand::u64(1..));
    let options = NodeOptions::new(
        args.id,
        cluster,
        peers.0.clone(),
        // Not used to initialize: where the node will listen for clients is `serve`'s choice.
        ([127, 0, 0, 1], 0).into(),
        args.data.clone(),
    );
    ServeNode::initialize(&options).map_err(|e| Failure::Setup(e.to_string()))?;
    let count = peers.0.len();
    let peers = peers
        .0
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "initialized node {} of cluster {cluster} ({} members) in {}",
        args.id,
        count,
        args.data.display()
    )?;
    if args.cluster.is_none() {
        writeln!(
            out,
            "initialize the other nodes with: zeroraft init --cluster {cluster} --peers {peers} --id I --data DIR"
        )?;
    }
    writeln!(
        out,
        "start it with: zeroraft serve --id {} --peers {peers} --data {} --listen ADDR --tls-dir DIR\n\
         where DIR holds the cluster's certificates, made once with: zeroraft certs --cluster {cluster} --nodes {} --out DIR",
        args.id,
        args.data.display(),
        count
    )?;
    Ok(())
}

/// `init --join`: asks the running cluster for its id, configuration and addresses, and
/// initializes the data directory of a node added to it as a learner.
fn init_joined(args: &InitArgs) -> Result<(), Failure> {
    let Some(join) = args.join else {
        return Err(Failure::Setup("init needs --peers or --join".to_owned()));
    };
    let security = ClientSecurity {
        tls_dir: args.tls_dir.clone(),
        insecure: args.tls_dir.is_none(),
    };
    let admin = Admin::new(&[join], &security, Duration::from_secs(30))?;
    let info = admin.members_from_leader()?;
    let id = args.id as u64;
    if info.removed.contains(&id) {
        return Err(Failure::Setup(format!(
            "node id {id} was removed from cluster {}; ids are never reused: add the node under a new id",
            info.cluster
        )));
    }
    if !info.learners.contains(&id) {
        return Err(Failure::Setup(format!(
            "node {id} is not a learner of cluster {}: add it first with `zeroraft admin add --id {id} --peer ADDR --client ADDR`",
            info.cluster
        )));
    }
    let as_ids = |ids: &[u64]| ids.iter().map(|&i| i as usize).collect::<Vec<_>>();
    let joined = Joined {
        voters: as_ids(&info.voters),
        learners: as_ids(&info.learners),
        peers: info
            .nodes
            .iter()
            .filter_map(|n| Some((n.id as usize, n.peer?)))
            .collect(),
    };
    let options = NodeOptions::new(
        args.id,
        info.cluster,
        Vec::new(),
        ([127, 0, 0, 1], 0).into(),
        args.data.clone(),
    );
    ServeNode::initialize_joined(&options, &joined).map_err(|e| Failure::Setup(e.to_string()))?;
    let me = joined
        .peers
        .iter()
        .find(|(i, _)| *i == args.id)
        .map(|(_, a)| a.to_string())
        .unwrap_or_default();
    writeln!(
        io::stdout().lock(),
        "initialized node {id} of cluster {} in {}, joining as a learner (voters {:?}, peers on {me});          start it with: zeroraft serve --id {id} --data {} --listen ADDR --tls-dir DIR, then, once it          has caught up, make it a voter with: zeroraft admin promote {id}",
        info.cluster,
        args.data.display(),
        info.voters,
        args.data.display()
    )?;
    Ok(())
}

/// A client of the membership requests of a running service: sends each to the leader, found
/// among the addresses given or named by the nodes.
struct Admin {
    client: KvClient,
    addrs: Vec<std::net::SocketAddr>,
    deadline: std::time::Instant,
}

impl Admin {
    fn new(
        addrs: &[std::net::SocketAddr],
        security: &ClientSecurity,
        timeout: Duration,
    ) -> Result<Self, Failure> {
        let options = ClientOptions {
            tls: client_tls(security, ClientRole::Admin)?,
            // A change answers once it is committed.
            attempt_timeout: timeout,
            ..ClientOptions::default()
        };
        Ok(Self {
            client: KvClient::new(addrs.to_vec(), options),
            addrs: addrs.to_vec(),
            deadline: std::time::Instant::now() + timeout,
        })
    }

    /// Sends `request` until a leader answers it: to the addresses given in turn, and to the
    /// client address of the leader a node names, if the address book has it.
    fn call(&self, request: &Request) -> Result<Response, Failure> {
        let mut candidates: std::collections::VecDeque<_> = self.addrs.iter().copied().collect();
        let mut last = String::from("no node answered");
        let mut pause = Duration::from_millis(50);
        loop {
            if std::time::Instant::now() >= self.deadline {
                return Err(Failure::Run(io::Error::other(format!("gave up: {last}"))));
            }
            let Some(addr) = candidates.pop_front() else {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(1));
                candidates.extend(self.addrs.iter().copied());
                continue;
            };
            match self.client.call(addr, request) {
                Ok(Response::WrongLeader { leader }) => {
                    last = format!("{addr} does not lead");
                    if let Some(leader) = leader
                        && let Ok(Response::Members(info)) =
                            self.client.call(addr, &Request::Members)
                        && let Some(client) = info
                            .nodes
                            .iter()
                            .find(|n| n.id == leader)
                            .and_then(|n| n.client)
                    {
                        candidates.push_front(client);
                    }
                }
                Ok(Response::Busy | Response::Timeout) => {
                    last = format!("{addr} is busy or timed out");
                    candidates.push_back(addr);
                    std::thread::sleep(pause);
                }
                Ok(Response::Error(why)) => {
                    return Err(Failure::Run(io::Error::other(why)));
                }
                Ok(Response::Forbidden(why)) => {
                    return Err(Failure::Setup(why));
                }
                Ok(answer) => return Ok(answer),
                Err(e) => last = format!("{addr}: {e}"),
            }
        }
    }

    /// The members as the leader knows them (with match indexes), or as any node does if no
    /// leader answers.
    fn members_from_leader(&self) -> Result<MembersInfo, Failure> {
        let mut info = None;
        for addr in &self.addrs {
            if let Ok(Response::Members(found)) = self.client.call(*addr, &Request::Members) {
                info = Some(found);
                break;
            }
        }
        let Some(info) = info else {
            return Err(Failure::Run(io::Error::other(
                "no node answered the members request",
            )));
        };
        if info.leader == Some(info.node) {
            return Ok(info);
        }
        let leader_addr = info
            .leader
            .and_then(|l| info.nodes.iter().find(|n| n.id == l))
            .and_then(|n| n.client);
        if let Some(addr) = leader_addr
            && let Ok(Response::Members(found)) = self.client.call(addr, &Request::Members)
        {
            return Ok(found);
        }
        Ok(info)
    }
}

/// `zeroraft admin`: shows or changes the members of a running service.
pub fn admin(args: &AdminArgs) -> Result<(), Failure> {
    let admin = Admin::new(
        &args.connect.0,
        &args.security,
        Duration::from_secs(args.timeout),
    )?;
    let request = match &args.op {
        AdminOp::Members => {
            let info = admin.members_from_leader()?;
            return print_members(&info);
        }
        AdminOp::Add { id, peer, client } => Request::AddMember {
            id: *id,
            peer: *peer,
            client: *client,
        },
        AdminOp::Promote { id } => Request::Promote { id: *id },
        AdminOp::Remove { id } => Request::RemoveMember { id: *id },
    };
    admin.call(&request)?;
    let done = match &args.op {
        AdminOp::Add { id, .. } => format!(
            "node {id} added as a learner; initialize it with: zeroraft init --id {id} --join ADDR --data DIR, start it, and promote it once it has caught up"
        ),
        AdminOp::Promote { id } => format!("node {id} is a voter"),
        AdminOp::Remove { id } => {
            format!("node {id} removed from the cluster; its id is never used again: stop it")
        }
        AdminOp::Members => String::new(),
    };
    writeln!(io::stdout().lock(), "{done}")?;
    Ok(())
}

/// Prints the members, one line each: id, role, peer and client address, match index and lag.
fn print_members(info: &MembersInfo) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    let joint = !info.outgoing.is_empty();
    writeln!(
        out,
        "cluster {} seen from node {}: leader {}, configuration at index {} ({}{}), commit index {}",
        info.cluster,
        info.node,
        info.leader
            .map_or_else(|| "unknown".to_owned(), |l| l.to_string()),
        info.config_index,
        if info.committed {
            "committed"
        } else {
            "not committed yet"
        },
        if joint { ", joint" } else { "" },
        info.commit_index
    )?;
    writeln!(
        out,
        "id  role      peer                   client                 match      lag"
    )?;
    for node in &info.nodes {
        let role = if info.voters.contains(&node.id) {
            if joint && !info.outgoing.contains(&node.id) {
                "voter(new)"
            } else {
                "voter"
            }
        } else if info.outgoing.contains(&node.id) {
            "voter(old)"
        } else if info.learners.contains(&node.id) {
            "learner"
        } else {
            "none"
        };
        let addr =
            |a: Option<std::net::SocketAddr>| a.map_or_else(|| "-".to_owned(), |a| a.to_string());
        let (matched, lag) = match node.match_index {
            Some(m) => (
                m.to_string(),
                info.last_log_index.saturating_sub(m).to_string(),
            ),
            None => ("-".to_owned(), "-".to_owned()),
        };
        writeln!(
            out,
            "{:<3} {:<9} {:<22} {:<22} {:<10} {}",
            node.id,
            role,
            addr(node.peer),
            addr(node.client),
            matched,
            lag
        )?;
    }
    if !info.removed.is_empty() {
        writeln!(out, "removed ids (never reused): {:?}", info.removed)?;
    }
    Ok(())
}

/// Runs one node of the key-value service until a stop signal, or until its node stops on its
/// own (then with the failure, which decides the exit status).
pub fn serve(args: &ServeArgs, stop: &Stop) -> Result<(), Failure> {
    // The engine and transport report through `tracing`: a node's operator sees warnings
    // (refused peers, dropped connections, a failed disk) on stderr, in colour only on a
    // terminal, or as JSON objects for a log shipper. The node's thread logs inside a span
    // that carries its id, term and role.
    let level = args
        .log_level
        .parse::<tracing::Level>()
        .unwrap_or(tracing::Level::WARN);
    let logs = tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_max_level(level);
    let _ = if args.log_format == "json" {
        logs.json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        logs.with_ansi(io::stderr().is_terminal()).try_init()
    };
    let in_memory = args.storage == StorageKind::Memory;
    let data = args.data.clone().unwrap_or_default();
    let cluster = match args.cluster {
        Some(cluster) => cluster,
        None if in_memory => 1,
        None => match FileStorage::read_identity(&data) {
            Ok((identity, _)) => identity.cluster,
            // Starting reports why the directory cannot be used, in full.
            Err(_) => 0,
        },
    };
    let peers = args.peers.as_ref().map(|p| p.0.clone()).unwrap_or_default();
    let mut options = NodeOptions::new(args.id, cluster, peers, args.listen, data);
    options.in_memory = in_memory;
    options.server.read_mode = match args.read_mode.as_str() {
        "lease" => ReadMode::Lease,
        "log" => ReadMode::Log,
        "unsafe-local" => ReadMode::UnsafeLocal,
        _ => ReadMode::ReadIndex,
    };
    options.peer_tls = match &args.tls_dir {
        Some(dir) => {
            let tls = peer_tls(dir, args.id)?;
            // The client port speaks TLS with the same CA and the node's own certificate.
            options.server.tls = Some(ServiceTls::new(&tls, cluster).map_err(|e| {
                Failure::Setup(format!("the certificates in {}: {e}", dir.display()))
            })?);
            Some(tls)
        }
        None => {
            writeln!(
                io::stderr().lock(),
                "zeroraft: warning: the links between nodes and to clients are plaintext \
                 (--insecure): anyone who can reach the peer port can speak as any node, and \
                 anyone who can reach the client port can transfer leadership"
            )?;
            None
        }
    };
    options.server.max_connections = args.max_connections;
    options.server.idle_timeout = Duration::from_secs(args.idle_timeout);
    options.server.frame_timeout = Duration::from_secs(args.frame_timeout);
    options.server.sessions.timeout = Duration::from_secs(args.session_timeout);
    options.server.sessions.max_sessions = args.max_sessions;
    options.config.compaction = zeroraft_engine::Compaction {
        every_entries: (args.compact_every > 0).then_some(args.compact_every),
        above_bytes: (args.compact_above_mib > 0).then_some(args.compact_above_mib << 20),
    };
    options.config.max_inflight_bytes = args.max_inflight_bytes;
    options.metrics = args.metrics;
    let node = ServeNode::start(options).map_err(|e| Failure::Setup(e.to_string()))?;
    writeln!(
        io::stderr().lock(),
        "zeroraft: node {} of cluster {cluster} serves clients on {}, peers on {}{}, {}",
        args.id,
        node.client_addr(),
        node.peer_addr(),
        node.metrics_addr()
            .map(|addr| format!(", metrics on http://{addr}/metrics"))
            .unwrap_or_default(),
        match &args.data {
            Some(dir) if !in_memory => format!("data in {}", dir.display()),
            _ => "raft state in memory only (lost when the process ends)".to_owned(),
        }
    )?;
    let failure = loop {
        if let Some(failure) = node.raft().failure() {
            break Some(failure);
        }
        if node.removed() {
            node.shutdown();
            return Err(Failure::Removed);
        }
        if stop.is_requested() {
            break None;
        }
        std::thread::sleep(POLL);
    };
    node.shutdown();
    match failure {
        Some(failure) => Err(Failure::Node(failure)),
        None => Ok(()),
    }
}

/// One operation against a running service; a get prints the value.
pub fn kv(args: &KvArgs) -> Result<(), Failure> {
    // A node gives its full status, with its configuration, to the operator only.
    let role = match args.op {
        KvOp::Status => ClientRole::Admin,
        _ => ClientRole::Client,
    };
    let options = ClientOptions {
        op_timeout: Duration::from_secs(args.timeout),
        tls: client_tls(&args.security, role)?,
        ..ClientOptions::default()
    };
    let mut client = KvClient::new(args.connect.0.clone(), options);
    let done = match &args.op {
        KvOp::Status => {
            let mut out = io::stdout().lock();
            let mut unreachable = 0;
            for (i, &addr) in args.connect.0.iter().enumerate() {
                let line = match client.status(addr) {
                    Ok(status) => status_line(&status),
                    Err(e) => {
                        unreachable += 1;
                        format!("node ? at {addr} (position {i} of --connect): unreachable: {e}")
                    }
                };
                writeln!(out, "{line}")?;
            }
            if unreachable == args.connect.0.len() {
                return Err(Failure::Run(io::Error::other("no node answered")));
            }
            Ok(Ok(()))
        }
        KvOp::Get { key } => client
            .get(key)
            .map(|value| writeln!(io::stdout().lock(), "{value}")),
        KvOp::Put { key, value } => client.put(key, value).map(|()| Ok(())),
        KvOp::Append { key, value } => client.append(key, value).map(|()| Ok(())),
    };
    match done {
        Ok(written) => Ok(written?),
        Err(e) => Err(Failure::Run(io::Error::other(e.to_string()))),
    }
}

/// One node's status as `kv status` prints it: its id, role, term, leader, indices, and the
/// configuration it has in force (what it is in it, then the configuration), or that it did
/// not report one (a server from before, or a connection that is not the operator's).
pub fn status_line(status: &NodeStatus) -> String {
    let role = match status.role {
        Role::Leader => "leader",
        Role::Candidate => "candidate",
        Role::Follower => "follower",
    };
    let leader = status
        .leader
        .map_or_else(|| "none".to_owned(), |l| format!("n{l}"));
    let mut line = format!(
        "n{}: {role}, term {}, leader {leader}, commit {}, applied {}, last {}",
        status.id, status.term, status.commit_index, status.last_applied, status.last_log_index
    );
    match status.full.as_ref().and_then(|f| f.status.membership) {
        Some(config) => {
            let id = usize::try_from(status.id).unwrap_or(usize::MAX);
            line.push_str(&format!(
                "; {} · {}",
                config.role_of(id).name(),
                zeroraft_monitor::ui::config_line(&config)
            ));
        }
        None => line.push_str("; configuration not reported"),
    }
    line
}

/// Node `id`'s TLS settings from `dir`, as `certs` wrote them.
fn peer_tls(dir: &std::path::Path, id: usize) -> Result<PeerTls, Failure> {
    let read = |name: String| {
        let path = dir.join(&name);
        std::fs::read(&path)
            .map_err(|e| Failure::Setup(format!("cannot read {}: {e}", path.display())))
    };
    let ca = read("ca.pem".into())?;
    let cert = read(format!("node-{id}.pem"))?;
    let key = read(format!("node-{id}.key"))?;
    PeerTls::from_pem(&ca, &cert, &key)
        .map_err(|e| Failure::Setup(format!("the certificates in {}: {e}", dir.display())))
}

/// The TLS a client command speaks, as its arguments say: `None` with --insecure; with
/// --tls-dir, the certificate of `role` there (for [`ClientRole::Admin`], admin.pem if there,
/// else client.pem).
pub fn client_tls(
    security: &ClientSecurity,
    role: ClientRole,
) -> Result<Option<ClientTls>, Failure> {
    let Some(dir) = &security.tls_dir else {
        return Ok(None);
    };
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path)
            .map_err(|e| Failure::Setup(format!("cannot read {}: {e}", path.display())))
    };
    let cluster_file = dir.join("cluster");
    let cluster = std::fs::read_to_string(&cluster_file)
        .map_err(|e| Failure::Setup(format!("cannot read {}: {e}", cluster_file.display())))?
        .trim()
        .parse::<u64>()
        .map_err(|e| {
            Failure::Setup(format!(
                "{} must hold the cluster's id: {e}",
                cluster_file.display()
            ))
        })?;
    let name = match role {
        ClientRole::Admin if dir.join("admin.pem").exists() => "admin",
        _ => "client",
    };
    let settings = PeerTls::from_pem(
        &read("ca.pem")?,
        &read(&format!("{name}.pem"))?,
        &read(&format!("{name}.key"))?,
    )
    .and_then(|settings| ClientTls::new(&settings, cluster))
    .map_err(|e| Failure::Setup(format!("the certificates in {}: {e}", dir.display())))?;
    Ok(Some(settings))
}

/// Makes a CA and a certificate for each node of a local cluster in a new directory.
pub fn certs(args: &CertsArgs) -> Result<(), Failure> {
    let setup = |e: &dyn std::fmt::Display| Failure::Setup(e.to_string());
    if let (Some(id), Some(dir)) = (args.add_node, &args.dir) {
        return certs_add_node(id, dir, args.days);
    }
    let (Some(dir), Some(nodes), Some(cluster)) = (&args.out, args.nodes, args.cluster) else {
        return Err(Failure::Setup(
            "certs needs --out, --nodes and --cluster, or --add-node and --dir".to_owned(),
        ));
    };
    if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(Failure::Setup(format!(
            "{} is not empty: certificates are written to a new directory",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure::Setup(format!("cannot make {}: {e}", dir.display())))?;
    let write = |name: String, text: &str, secret: bool| -> Result<(), Failure> {
        let path = dir.join(name);
        let mut open = std::fs::OpenOptions::new();
        open.write(true).create_new(true);
        if secret {
            use std::os::unix::fs::OpenOptionsExt;
            open.mode(0o600);
        }
        open.open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
            .map_err(|e| Failure::Setup(format!("cannot write {}: {e}", path.display())))
    };
    // From an hour ago (clocks differ a little), for --days.
    let now = std::time::SystemTime::now();
    let valid = now - Duration::from_secs(3600)..now + Duration::from_secs(args.days * 86_400);
    let ca = Authority::new(&format!("zeroraft cluster {cluster} CA"), valid.clone())
        .map_err(|e| setup(&e))?;
    write("ca.pem".into(), &ca.issued().cert_pem, false)?;
    write("ca.key".into(), &ca.issued().key_pem, true)?;
    for id in 0..nodes {
        let node = ca.node(cluster, id, valid.clone()).map_err(|e| setup(&e))?;
        write(format!("node-{id}.pem"), &node.cert_pem, false)?;
        write(format!("node-{id}.key"), &node.key_pem, true)?;
    }
    for (name, role) in [("client", ClientRole::Client), ("admin", ClientRole::Admin)] {
        let issued = ca
            .client(cluster, role, valid.clone())
            .map_err(|e| setup(&e))?;
        write(format!("{name}.pem"), &issued.cert_pem, false)?;
        write(format!("{name}.key"), &issued.key_pem, true)?;
    }
    write("cluster".into(), &format!("{cluster}\n"), false)?;
    writeln!(
        io::stdout().lock(),
        "wrote a CA, {} node certificates, a client's and an operator's (admin) of cluster {} to {}; \
         start each node with: zeroraft serve --tls-dir {} ..., and the clients with --tls-dir {} \
         (give them only ca.pem, cluster and their own certificate and key)",
        nodes,
        cluster,
        dir.display(),
        dir.display(),
        dir.display()
    )?;
    Ok(())
}

/// `certs --add-node I --dir DIR`: a certificate for node I of the cluster whose CA `certs`
/// wrote to DIR, for a node added to the running cluster.
fn certs_add_node(id: usize, dir: &std::path::Path, days: u64) -> Result<(), Failure> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path)
            .map_err(|e| Failure::Setup(format!("cannot read {}: {e}", path.display())))
    };
    let cluster = read("cluster")?.trim().parse::<u64>().map_err(|e| {
        Failure::Setup(format!(
            "{} must hold the cluster's id: {e}",
            dir.join("cluster").display()
        ))
    })?;
    let ca = Authority::from_pem(&read("ca.pem")?, &read("ca.key")?)
        .map_err(|e| Failure::Setup(format!("the CA in {}: {e}", dir.display())))?;
    let now = std::time::SystemTime::now();
    let valid = now - Duration::from_secs(3600)..now + Duration::from_secs(days * 86_400);
    let node = ca
        .node(cluster, id, valid)
        .map_err(|e| Failure::Setup(e.to_string()))?;
    for (name, text, secret) in [
        (format!("node-{id}.pem"), &node.cert_pem, false),
        (format!("node-{id}.key"), &node.key_pem, true),
    ] {
        let path = dir.join(name);
        let mut open = std::fs::OpenOptions::new();
        open.write(true).create_new(true);
        if secret {
            use std::os::unix::fs::OpenOptionsExt;
            open.mode(0o600);
        }
        open.open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
            .map_err(|e| Failure::Setup(format!("cannot write {}: {e}", path.display())))?;
    }
    writeln!(
        io::stdout().lock(),
        "wrote node-{id}.pem and node-{id}.key of cluster {cluster} to {}",
        dir.display()
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use zeroraft_engine::{Membership, MembershipStatus, Status};

    use super::*;

    #[test]
    fn a_status_line_gives_the_configuration_when_the_node_reports_it() {
        let mut status = Status {
            role: Role::Leader,
            term: 4,
            leader: Some(3),
            commit_index: 90,
            last_applied: 90,
            last_log_index: 91,
            ..Status::initial(3)
        };
        let compact = NodeStatus::from_status(&status);
        assert_eq!(
            status_line(&compact),
            "n3: leader, term 4, leader n3, commit 90, applied 90, last 91; configuration not reported"
        );
        let old = Membership::new([0, 1, 2], []).unwrap();
        let new = Membership::new([2, 3, 4], []).unwrap();
        status.membership = Some(MembershipStatus {
            membership: old.enter_joint(&new).unwrap(),
            index: 88,
            committed: true,
        });
        let full = NodeStatus::with_full(&status, Vec::new());
        assert_eq!(
            status_line(&full),
            "n3: leader, term 4, leader n3, commit 90, applied 90, last 91; joining · \
             joint n0 n1 n2 → n2 n3 n4 · entry 88"
        );
    }
}
