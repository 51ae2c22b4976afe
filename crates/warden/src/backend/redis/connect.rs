//! Connecting to a node: the URL's options, the scripts, the subscriber and the housekeeper.

#[allow(unused_imports)]
use super::*;

impl RedisBackend {
    /// Connects to the Redis node at `url` (`redis://[user:pass@]host:port[/db][?prefix=app:&timeout_ms=1000]`),
    /// loads the scripts and starts the subscriber. Fails with [`Error::BackendUnavailable`] within the
    /// timeout if the node cannot be reached.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with_router(url, Arc::new(WakeRouter::default())).await
    }

    /// Like [`RedisBackend::connect`], routing wake-ups to `router`.
    pub async fn connect_with_router(url: &str, router: Arc<WakeRouter>) -> Result<Self> {
        Self::connect_inner(url, router, Role::Single).await
    }

    /// One node of a Redlock: wake-ups go to the Redlock's shared router, and a release only wakes the
    /// queue's head (the Redlock client takes the lock on a quorum itself).
    pub(crate) async fn connect_redlock_node(url: &str, router: Arc<WakeRouter>) -> Result<Self> {
        Self::connect_inner(url, router, Role::RedlockNode).await
    }

    /// One primary of a Redis Cluster (see [`Role::ClusterNode`]).
    pub(crate) async fn connect_cluster_node(
        url: &str,
        router: Arc<WakeRouter>,
        counters: Arc<Counters>,
        owned: Arc<OwnedSlots>,
    ) -> Result<Self> {
        Self::connect_inner(url, router, Role::ClusterNode { counters, owned }).await
    }

    async fn connect_inner(url: &str, router: Arc<WakeRouter>, role: Role) -> Result<Self> {
        let handoff = !matches!(role, Role::RedlockNode);
        let (redis_url, address, opts) = parse_url(url)?;
        let client = open_client(&redis_url, &address, &opts)?;
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(opts.timeout))
            .set_response_timeout(Some(opts.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(100));
        let conn = tokio::time::timeout(opts.timeout, client.get_connection_manager_with_config(cfg))
            .await
            .map_err(|_| unavailable(&address, format!("no answer within {:?}", opts.timeout)))?
            .map_err(|e| unavailable(&address, e))?;
        let batch = Script::new(&format!("{LIB}\n{QUEUE}\n{OPS}\n{BATCH}"));
        let inspect = Script::new(&format!("{LIB}\n{QUEUE}\n{INSPECT}"));
        let mut c = conn.clone();
        for s in [&batch, &inspect] {
            tokio::time::timeout(opts.timeout, s.prepare_invoke().load_async(&mut c))
                .await
                .map_err(|_| unavailable(&address, "no answer while loading the scripts"))?
                .map_err(|e| map_err(&address, e))?;
        }
        warn_on_v1_data(&mut c, &address, &opts).await;
        let names = Names::new(&opts.prefix);
        let mode = match role {
            Role::Single => "1",
            Role::RedlockNode => "",
            Role::ClusterNode { .. } => "s",
        };
        let header = vec![
            opts.prefix.clone(),
            names.channel.clone(),
            mode.to_string(),
            opts.retain.as_millis().to_string(),
            MAX_WAITERS_PER_RESOURCE.to_string(),
        ];
        // A cluster's nodes share the cluster's counters and its subscriber, and sweep only their own slots.
        let (counters, owned, mut tasks) = match role {
            Role::ClusterNode { counters, owned } => (counters, Some(owned), Vec::new()),
            Role::Single | Role::RedlockNode => {
                let subscriber =
                    subscriber::spawn_subscriber(&redis_url, &address, &opts, &names.channel, router.clone()).await?;
                (Arc::new(Counters::default()), None, vec![subscriber])
            }
        };
        let batcher = batch::Batcher::start(
            conn.clone(),
            counters.clone(),
            batch::Config {
                script: batch,
                header: header.clone(),
                address: address.clone(),
                timeout: opts.timeout,
                inflight: opts.inflight,
                replicas: opts.replicas,
                wait: opts.wait,
                send_abandoned: !handoff,
            },
        );
        let keeper = Arc::new(Housekeeper {
            conn: conn.clone(),
            inspect: inspect.clone(),
            header: header.clone(),
            counters: counters.clone(),
            stats: names.stats.clone(),
            top: names.top.clone(),
            address: address.clone(),
            timeout: opts.timeout,
            owned,
        });
        tasks.push(housekeeping::spawn(keeper.clone(), opts.sweep_every));
        Ok(RedisBackend {
            conn,
            address,
            opts,
            names,
            batcher,
            keeper,
            router,
            handoff,
            tasks,
        })
    }
}

/// Says so when the node holds a warden 0.x layout (its lease records in `warden:tok`): those leases' lock keys
/// are still respected (a lock key that exists is never granted over), but their records, queues and
/// statistics are not read.
pub(super) async fn warn_on_v1_data(conn: &mut ConnectionManager, address: &str, opts: &Options) {
    // A hash: a lock on a resource of that name is a string or a sorted set.
    let old = format!("{}warden:tok", opts.prefix);
    let ty = tokio::time::timeout(opts.timeout, redis::cmd("TYPE").arg(&old).query_async::<String>(conn)).await;
    if matches!(ty, Ok(Ok(t)) if t == "hash") {
        tracing::warn!(
            address,
            "this Redis holds lease records of an older warden layout; their locks are respected until they \
             expire, but stop the older processes before relying on queues and statistics (see the README)"
        );
    }
}

/// A redis-rs client for `url`: for `rediss://` with `ca=`, one that checks the server's certificate against that
/// CA (otherwise redis-rs checks it against the system's roots).
pub(crate) fn open_client(url: &str, address: &str, opts: &Options) -> Result<redis::Client> {
    let invalid = |e: redis::RedisError| Error::invalid("backend", format!("{address} is not a valid Redis URL: {e}"));
    match &opts.ca {
        Some(ca) => redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca.clone()),
            },
        )
        .map_err(invalid),
        None => redis::Client::open(url).map_err(invalid),
    }
}
