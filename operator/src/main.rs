//! The `llm-gateway-operator` binary: checks that the cluster is reachable and the CRDs are
//! installed (exiting with a hint otherwise), then runs the controllers and the admin server
//! (`/health`, `/ready`, `/metrics`) until SIGTERM, when every loop stops, the leader
//! releases its Lease, and the process exits within `EXIT_DEADLINE` (4.5 s).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use llm_gateway_operator::leader::{self, Election, Leader};
use llm_gateway_operator::logging::{self, LogFormat};
use llm_gateway_operator::pepper::{self, PepperError, PepperSecret};
use llm_gateway_operator::pod_policy::ImagePolicy;
use llm_gateway_operator::shutdown::Shutdown;
use llm_gateway_operator::startup;
use llm_gateway_operator::usage_redis::RedisHosts;
use llm_gateway_operator::{Context, Settings, admin, controllers};

/// Reconciles LlmGateway, LlmProvider, RoutePolicy, ApiKey and LlmQuota resources.
#[derive(Debug, Parser)]
#[command(name = "llm-gateway-operator", version, about)]
struct Args {
    /// Seconds to wait for the API server at startup before giving up.
    #[arg(long, env = "CONNECT_TIMEOUT_SECONDS", default_value_t = 10)]
    connect_timeout_seconds: u64,
    /// Log line format: `text`, or `json` (one object per line).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Where `/health`, `/ready` and `/metrics` listen.
    #[arg(long, env = "ADMIN_ADDRESS", default_value = "0.0.0.0:8081")]
    admin_address: SocketAddr,
    /// Secret mixed into API-key hashes; must equal the gateways' `API_KEY_PEPPER`.
    #[arg(
        long,
        env = "API_KEY_PEPPER",
        default_value = "",
        hide_env_values = true
    )]
    api_key_pepper: String,
    /// Without `API_KEY_PEPPER`: the Secret in the operator's namespace holding the pepper,
    /// created (random) by the first replica when it does not exist, and never rotated.
    #[arg(long, env = "API_KEY_PEPPER_SECRET")]
    api_key_pepper_secret: Option<String>,
    /// The entry of `API_KEY_PEPPER_SECRET` holding the pepper.
    #[arg(long, env = "API_KEY_PEPPER_SECRET_KEY", default_value = "pepper")]
    api_key_pepper_secret_key: String,
    /// Namespaces to watch and write, comma-separated (namespaced mode: Roles in each are
    /// enough); empty watches the whole cluster (a ClusterRole).
    #[arg(long, env = "WATCH_NAMESPACES", default_value = "")]
    watch_namespaces: String,
    /// Elect one leader among replicas through a Lease (only the leader reconciles).
    #[arg(long, env = "LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// The operator's own namespace: its Lease and its pepper Secret live there.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// This replica's identity in the Lease (defaults to the pod name, else a random id).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// How long leadership lasts without renewal, e.g. "15s".
    #[arg(long, env = "LEASE_DURATION", default_value = "15s")]
    lease_duration: humantime::Duration,
    /// How often ApiKey `status.usage` is refreshed from Redis, e.g. "60s".
    #[arg(long, env = "USAGE_SYNC_INTERVAL", default_value = "60s")]
    usage_sync_interval: humantime::Duration,
    /// Redis hosts the usage sync may dial besides Services of each gateway's own namespace,
    /// comma-separated (e.g. a shared `redis.shared.svc.cluster.local`).
    #[arg(long, env = "USAGE_SYNC_REDIS_HOSTS", default_value = "")]
    usage_sync_redis_hosts: String,
    /// The cluster's DNS domain, for the fully qualified names of Redis Services.
    #[arg(long, env = "CLUSTER_DOMAIN", default_value = "cluster.local")]
    cluster_domain: String,
    /// Image repositories LlmGateway `spec.image` and `selfHosted.image` may use,
    /// comma-separated: `ghcr.io/acme/` allows everything under it, `vllm/vllm-openai` that one
    /// repository. The operator's own gateway repository is always allowed; empty allows
    /// nothing else (so writing those resources is not running any image).
    #[arg(long, env = "ALLOWED_IMAGE_REPOSITORIES", default_value = "")]
    allowed_image_repositories: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let traces = logging::init(args.log_format);
    let images = match ImagePolicy::parse(&args.allowed_image_repositories) {
        Ok(images) => images,
        Err(e) => {
            eprintln!("llm-gateway-operator: ALLOWED_IMAGE_REPOSITORIES: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(allowed = ?images.entries(), "image repositories besides the gateway's own");
    let limit = Duration::from_secs(args.connect_timeout_seconds);
    let (client, key_pepper) = match connect(&args, limit).await {
        Ok(connected) => connected,
        Err(message) => {
            eprintln!("llm-gateway-operator: {message}");
            return ExitCode::FAILURE;
        }
    };
    let settings = Settings {
        key_pepper,
        usage_sync_interval: args.usage_sync_interval.into(),
        redis_hosts: RedisHosts {
            cluster_domain: args.cluster_domain.clone(),
            extra_hosts: args
                .usage_sync_redis_hosts
                .split(',')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
        },
        images,
    };
    // After the cluster check, so a SIGTERM during it still ends the process at once.
    let shutdown = Shutdown::on_signal();
    let scopes = startup::scopes(&args.watch_namespaces);
    tracing::info!(?scopes, "watching");
    let context = Context::new(client, settings, scopes[0].clone());
    let contexts: Vec<Context> = std::iter::once(context.clone())
        .chain(scopes[1..].iter().map(|s| context.with_scope(s.clone())))
        .collect();
    let listener = match tokio::net::TcpListener::bind(args.admin_address).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!(
                "llm-gateway-operator: cannot listen on {}: {e}",
                args.admin_address
            );
            return ExitCode::FAILURE;
        }
    };
    let address = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(admin = %address, "llm-gateway-operator running");
    let admin = axum::serve(listener, admin::router(context.clone()))
        .with_graceful_shutdown(shutdown.wait())
        .into_future();
    let mut admin = tokio::spawn(admin);
    // Whatever hangs (a request to an unreachable API server, a reconcile that does not
    // finish), the process ends within the kubelet's patience and this bound.
    let deadline = shutdown.clone();
    tokio::spawn(async move {
        deadline.wait().await;
        tokio::time::sleep(EXIT_DEADLINE).await;
        eprintln!("llm-gateway-operator: shutdown took over {EXIT_DEADLINE:?}; exiting");
        std::process::exit(1);
    });
    let code = tokio::select! {
        code = ready_then_lead(leader_election(&args), contexts, shutdown.clone()) => code,
        result = admin_failure(&mut admin, &shutdown) => {
            eprintln!("llm-gateway-operator: admin server stopped: {result:?}");
            return ExitCode::FAILURE;
        }
    };
    // The admin server stops with the shutdown (its connections close); wait for it briefly.
    if !admin.is_finished() {
        drop(tokio::time::timeout(ADMIN_GRACE, &mut admin).await);
    }
    tracing::info!("llm-gateway-operator stopped");
    if let Some(traces) = traces {
        // Off the runtime: the flush waits on the exporter's thread.
        let _ = tokio::task::spawn_blocking(move || traces.shutdown()).await;
    }
    code
}

/// How long the writers may take to stop at shutdown before they are aborted (the Lease is
/// released after either: an aborted writer cannot overlap with the next leader).
const WRITERS_GRACE: Duration = Duration::from_secs(3);

/// How long the admin server may take to close its connections at shutdown.
const ADMIN_GRACE: Duration = Duration::from_millis(500);

/// The process exits this long after SIGTERM at the latest (writers, Lease release and admin
/// server together fit in it).
const EXIT_DEADLINE: Duration = Duration::from_millis(4500);

/// Marks the replica ready once its caches are filled, leader or standby (a standby that is
/// never ready keeps a Deployment of two replicas from becoming Available, and deadlocks a
/// rollout of one: the surge pod cannot get the Lease the old leader keeps renewing), then
/// competes for the Lease. The caches are awaited here, once: kube-runtime's stores did not
/// always wake a second task waiting for the same store.
async fn ready_then_lead(
    election: Option<Election>,
    contexts: Vec<Context>,
    shutdown: Shutdown,
) -> ExitCode {
    let caches =
        futures_util::future::join_all(contexts.iter().map(|c| c.caches.wait_until_ready()));
    tokio::select! {
        _ = caches => {}
        () = shutdown.wait() => return ExitCode::SUCCESS,
    }
    // Readiness is shared by every scope's context.
    contexts[0].set_ready();
    lead_and_write(election, contexts, shutdown).await
}

/// Waits for leadership (with an election), runs the writers of every scope until
/// `shutdown`, then releases the Lease once they stopped. Exits with failure when leadership
/// is lost, so a stale leader never writes.
async fn lead_and_write(
    election: Option<Election>,
    contexts: Vec<Context>,
    shutdown: Shutdown,
) -> ExitCode {
    let client = contexts[0].client.clone();
    let mut leader = match election {
        Some(election) => match leader::lead(client, election, &shutdown).await {
            Some(leader) => Some(leader),
            // Stopped as a standby: nothing to hand over.
            None => return ExitCode::SUCCESS,
        },
        None => None,
    };
    let writers = contexts
        .into_iter()
        .map(|context| controllers::run(context, shutdown.clone()));
    let mut writers = Box::pin(futures_util::future::join_all(writers));
    let stopped = tokio::select! {
        _ = &mut writers => true,
        () = lost(&mut leader) => {
            eprintln!("llm-gateway-operator: lost leadership; exiting so a new leader takes over");
            return ExitCode::FAILURE;
        }
        () = shutdown.wait() => tokio::time::timeout(WRITERS_GRACE, &mut writers).await.is_ok(),
    };
    // Dropping the writers aborts whatever still runs (kube-runtime aborts a reconcile's task
    // when its handle is dropped), so nothing of this leader overlaps the next one. Runners
    // still waiting for a cache when SIGTERM came right after they started never finish a
    // graceful stop; leaving the Lease to expire for them cost a whole lease duration.
    drop(writers);
    if !stopped {
        tracing::warn!("the writers did not stop within {WRITERS_GRACE:?}; aborted them");
    }
    if let Some(leader) = leader {
        leader.release().await;
    }
    ExitCode::SUCCESS
}

/// Resolves when leadership is lost; never without an election.
async fn lost(leader: &mut Option<Leader>) {
    match leader {
        Some(leader) => leader.lost().await,
        None => std::future::pending().await,
    }
}

/// Resolves if the admin server stops on its own; its stop at shutdown is expected and
/// must not preempt the release of the Lease.
async fn admin_failure(
    admin: &mut tokio::task::JoinHandle<std::io::Result<()>>,
    shutdown: &Shutdown,
) -> Result<std::io::Result<()>, tokio::task::JoinError> {
    let result = admin.await;
    if shutdown.is_requested() {
        std::future::pending::<()>().await;
    }
    result
}

/// Connects to the cluster and loads the pepper, each step bounded by `limit`; the error is
/// the message to print.
async fn connect(args: &Args, limit: Duration) -> Result<(kube::Client, Vec<u8>), String> {
    let scopes = startup::scopes(&args.watch_namespaces);
    let client = tokio::time::timeout(limit, startup::check_cluster(&scopes))
        .await
        .map_err(|_| format!("no Kubernetes API server answered within {limit:?}"))?
        .map_err(|e| format!("{e:#}"))?;
    let pepper = tokio::time::timeout(limit, key_pepper(args, &client))
        .await
        .map_err(|_| format!("API-key pepper: no answer within {limit:?}"))?
        .map_err(|e| format!("API-key pepper: {e}"))?;
    Ok((client, pepper))
}

/// `API_KEY_PEPPER` when set, else the pepper Secret's (created when missing), else empty
/// (development only: gateways refuse an empty pepper outside `DEV_MODE`).
async fn key_pepper(args: &Args, client: &kube::Client) -> Result<Vec<u8>, PepperError> {
    if !args.api_key_pepper.is_empty() {
        return Ok(args.api_key_pepper.clone().into_bytes());
    }
    let Some(name) = args.api_key_pepper_secret.clone() else {
        tracing::warn!(
            "no API_KEY_PEPPER or API_KEY_PEPPER_SECRET: key hashes use an empty pepper"
        );
        return Ok(Vec::new());
    };
    let secret = PepperSecret {
        namespace: args.lease_namespace.clone(),
        name,
        key: args.api_key_pepper_secret_key.clone(),
    };
    pepper::load_or_create(client, &secret, &startup::scopes(&args.watch_namespaces)).await
}

fn leader_election(args: &Args) -> Option<Election> {
    args.leader_election.then(|| Election {
        name: "llm-gateway-operator".to_owned(),
        namespace: args.lease_namespace.clone(),
        identity: args
            .identity
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        duration: *args.lease_duration,
        renew: *args.lease_duration / 3,
        retry: (*args.lease_duration / 3).min(Duration::from_secs(1)),
    })
}
