//! [`Shared`]: the state of one server that every session, transport and handle
//! reaches: the configuration, the supervisor, the running namespaces, the open
//! connections. `server.rs` builds it; sessions and (above them) transports read it.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Instant;

use actix::prelude::*;

use super::addresses::Addresses;
pub(crate) use super::addresses::{network_of, Over};
#[cfg(feature = "cluster")]
use super::Nodes;
use super::Supervisor;
use crate::namespace::{Namespace, NamespaceActor, NamespaceHandle, NamespaceParts, Registry};
use crate::room::Gauge;
use crate::{Config, ConnectRate};

/// Makes a namespace on demand from its name (`VolleyBuilder::dynamic_namespaces`).
pub(crate) type NamespaceFactory = dyn Fn(&str) -> Option<Namespace> + Send + Sync;

/// Picks the arbiter a session without a connection of its own is started on (one
/// moved here from another node).
#[cfg(feature = "cluster")]
pub(crate) type RoomPlacer = std::sync::Arc<dyn Fn() -> actix::ArbiterHandle + Send + Sync>;

/// State shared by every session, transport and handle of one server.
pub(crate) struct Shared {
    pub config: Config,
    pub supervisor: Addr<Supervisor>,
    pub namespaces: Arc<Registry>,
    pub dynamic: Option<Arc<NamespaceFactory>>,
    /// Where a session moved here from another node starts (feature `cluster`).
    #[cfg(feature = "cluster")]
    pub place_room: RoomPlacer,
    pub control: ArbiterHandle,
    /// Broadcast deliveries skipped because the frame was larger than the recipient
    /// client accepts (see [`crate::Volley::frames_over_client_limit`]).
    pub over_client_limit: AtomicU64,
    /// Open connections of both transports, for the connection limits.
    pub connections: Arc<Connections>,
    /// The server's figures, exported at `GET /metrics` when configured.
    pub metrics: crate::metrics::Metrics,
    /// The other nodes of this node's cluster (`VolleyBuilder::cluster`), as the
    /// sessions and transports see them: the cluster's node, behind [`Nodes`].
    #[cfg(feature = "cluster")]
    pub cluster: Option<Arc<dyn Nodes>>,
}

/// Open connections, in total and per client address (with how fast each address
/// connected lately).
pub(crate) struct Connections {
    pub(crate) total: AtomicUsize,
    per_address: Mutex<Addresses>,
    /// `Config::max_connections_per_ip`.
    max_per_address: usize,
    /// `Config::connect_rate_per_ip`.
    rate: ConnectRate,
}

impl Connections {
    pub fn new(config: &Config) -> Self {
        Connections {
            total: AtomicUsize::new(0),
            per_address: Mutex::default(),
            max_per_address: config.max_connections_per_ip,
            rate: config.connect_rate_per_ip,
        }
    }

    /// Counts a new connection from `address`, unless that address is over a limit.
    pub fn admit_from(&self, address: IpAddr) -> Result<(), Over> {
        let now = Instant::now();
        self.addresses()
            .admit(address, self.max_per_address, self.rate, now)
    }

    /// A connection from `address` closed.
    pub fn release_from(&self, address: IpAddr) {
        self.addresses().release(address, self.rate, Instant::now());
    }

    fn addresses(&self) -> std::sync::MutexGuard<'_, Addresses> {
        self.per_address.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Open connections right now.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

impl Shared {
    /// The running namespace `name`, created on first use if a dynamic factory
    /// accepts it. Only connects and `Volley::of` come here, never events.
    pub fn namespace(&self, name: &str) -> Option<NamespaceHandle> {
        if let Some(found) = read(&self.namespaces).get(name) {
            return Some(found.clone());
        }
        let spec = (self.dynamic.as_ref()?)(name)?;
        // Made on demand, it is dropped once unused (on a node of a cluster too: its
        // channels are wanted by count, so an old actor letting go after a new one
        // of the name took them leaves them subscribed).
        let registry = Some(Arc::downgrade(&self.namespaces));
        let mut map = self.namespaces.write().unwrap_or_else(|e| e.into_inner());
        // Another session may have created it meanwhile.
        let handle = map
            .entry(name.to_owned())
            .or_insert_with(|| self.start_namespace(name, spec, registry));
        Some(handle.clone())
    }

    /// Starts the actor of namespace `name` on the control thread; `registry`: the
    /// registry it leaves once unused (made by the dynamic factory), or none (kept).
    pub fn start_namespace(
        &self,
        name: &str,
        spec: Namespace,
        registry: Option<Weak<Registry>>,
    ) -> NamespaceHandle {
        let name: Arc<str> = name.into();
        let emitted = self.metrics.broadcasts.clone();
        let actor = NamespaceActor::new(name.clone(), emitted)
            .with_leaver(self.supervisor.clone().recipient());
        let broadcasts = Arc::new(Gauge::new(self.config.max_mailbox));
        #[cfg(feature = "cluster")]
        let actor = match &self.cluster {
            Some(nodes) => actor.with_remote(nodes.namespace(name.clone(), broadcasts.clone())),
            None => actor,
        };
        NamespaceHandle::new(NamespaceParts {
            name,
            spec: Arc::new(spec),
            addr: Arc::new(NamespaceActor::start_in_arbiter(&self.control, |_| actor)),
            broadcasts,
            registry,
        })
    }
}

/// Reads `lock` even if a writer panicked (the poison is ignored).
pub(crate) fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}
