//! Command line and environment settings (every flag also reads the environment variable
//! named in its help, as the original gateway's deployment guide documents).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// OpenAI-compatible LLM gateway.
#[derive(Debug, Parser)]
#[command(
    name = "llm-gateway",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings for serving (when no subcommand is given).
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API (the default).
    Serve(Box<ServeArgs>),
    /// Validate a config directory and exit non-zero with readable errors.
    Check {
        /// Directory of YAML manifests.
        #[arg(long, env = "CONFIG_DIR")]
        config: PathBuf,
        /// Secret mixed into API-key hashes.
        #[arg(
            long,
            env = "API_KEY_PEPPER",
            default_value = "",
            hide_env_values = true
        )]
        api_key_pepper: String,
    },
    /// Print new random API keys, one per line (put each in the Secret an ApiKey names,
    /// under `apiKey`).
    Keygen {
        /// How many keys to print (benchmarks and bulk provisioning want thousands).
        #[arg(long, default_value_t = 1)]
        count: usize,
    },
    /// Exit 0 when the gateway at `url` answers its liveness probe (container HEALTHCHECKs
    /// use it: the runtime image has no shell or curl).
    Healthcheck {
        /// The liveness URL.
        #[arg(long, default_value = "http://127.0.0.1:8000/health")]
        url: String,
    },
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Settings for `serve`.
#[derive(Clone, Debug, Args)]
pub struct ServeArgs {
    /// Directory of YAML manifests to serve and watch (standalone mode).
    #[arg(long, env = "CONFIG_DIR")]
    pub config: Option<PathBuf>,
    /// Kubernetes mode: watch LlmProvider, RoutePolicy, ApiKey, LlmGateway and Secret objects
    /// in this namespace (the client configuration comes from the pod's service account or
    /// `KUBECONFIG`).
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Kubernetes mode: the LlmGateway whose `spec.auth` applies.
    #[arg(long, env = "GATEWAY_NAME")]
    pub gateway_name: Option<String>,
    /// Kubernetes mode: read provider credentials from this one Secret (the operator's copy of
    /// exactly the entries the providers reference) instead of watching every Secret, so the
    /// gateway's Role can name it alone. Keys are then verified against ApiKey status hashes.
    #[arg(long, env = "CREDENTIALS_SECRET")]
    pub credentials_secret: Option<String>,
    /// Kubernetes mode: a directory of manifests (the operator's last-known-good ConfigMap) to
    /// serve when the API server cannot be reached at startup.
    #[arg(long, env = "LAST_KNOWN_GOOD_DIR")]
    pub last_known_good: Option<PathBuf>,
    /// Kubernetes mode: how long to wait for the first complete sync before falling back to
    /// the last-known-good directory.
    #[arg(long, env = "INITIAL_SYNC_TIMEOUT", default_value = "10s")]
    pub initial_sync_timeout: humantime::Duration,
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: String,
    /// Port to listen on (0 picks a free one and logs it).
    #[arg(long, env = "PORT", default_value_t = 8000)]
    pub port: u16,
    /// Log filter: error, warn, info, debug, trace, or a tracing directive list.
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Address of the admin listener: `/metrics`, `/health/detailed`, `/health/system`,
    /// `/health/circuit-breakers` (and `/health`, `/ready`). Loopback by default; in a pod, set
    /// `0.0.0.0:9090` for Prometheus and keep the port off the Service clients use.
    #[arg(long, env = "ADMIN_ADDRESS", default_value = "127.0.0.1:9090")]
    pub admin_address: String,
    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Largest accepted request body in bytes.
    #[arg(long, env = "MAX_REQUEST_BODY_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_request_body_bytes: usize,
    /// Longest a client may take to send a request's headers, and longest an HTTP/1 keep-alive
    /// connection may stay idle between requests (slow-loris and idle connections are closed).
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "10s")]
    pub header_read_timeout: humantime::Duration,
    /// Longest a client may take to send a request body, from when the handler starts reading
    /// it (a slowly dripped body is refused with 400).
    #[arg(long, env = "BODY_READ_TIMEOUT", default_value = "30s")]
    pub body_read_timeout: humantime::Duration,
    /// Browser origins allowed to call the API (CORS), comma-separated
    /// (`https://app.example.com`), or `*` for any; unset, cross-origin requests get no CORS
    /// headers and browsers refuse them.
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub cors_allowed_origins: Vec<String>,
    /// Let browsers send credentials (cookies) cross-origin; API keys travel in headers, so
    /// this is rarely needed. Not allowed with `CORS_ALLOWED_ORIGINS=*`.
    #[arg(long, env = "CORS_ALLOW_CREDENTIALS", default_value_t = false, action = clap::ArgAction::Set)]
    pub cors_allow_credentials: bool,
    /// How long browsers may cache a CORS preflight answer.
    #[arg(long, env = "CORS_MAX_AGE", default_value = "10m")]
    pub cors_max_age: humantime::Duration,
    /// How long Responses are kept, so a client can continue one with `previous_response_id` or
    /// `item_reference` on any provider (per caller; in Redis when `REDIS_URL` is set, shared
    /// by every replica, else in this replica's memory).
    #[arg(long, env = "RESPONSE_STORE_TTL", default_value = "1h")]
    pub response_store_ttl: humantime::Duration,
    /// Memory for kept Responses, in bytes of JSON, without Redis; the oldest go first when it
    /// is full (with Redis, its own `maxmemory` bounds them).
    #[arg(long, env = "RESPONSE_STORE_MAX_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub response_store_max_bytes: usize,
    /// Refused credentials one client address may send per minute (missing, malformed, unknown,
    /// expired, failing verification); past it the address's refused credentials get 429 with
    /// Retry-After instead of 401 (valid ones are still served). 0 turns it off (do so, or
    /// raise it, behind a proxy that hides client addresses: every client then shares one).
    #[arg(long, env = "AUTH_FAILURES_PER_MINUTE",
          default_value_t = crate::auth_throttle::DEFAULT_FAILURES_PER_MINUTE)]
    pub auth_failures_per_minute: u32,
    /// Largest config file read (directory or last-known-good), in bytes; a larger one is
    /// refused naming this setting.
    #[arg(long, env = "MAX_CONFIG_FILE_BYTES", default_value_t = crate::config::source_dir::DEFAULT_MAX_FILE_BYTES)]
    pub max_config_file_bytes: u64,
    /// Largest sum of all config files, in bytes.
    #[arg(long, env = "MAX_CONFIG_TOTAL_BYTES", default_value_t = crate::config::source_dir::DEFAULT_MAX_TOTAL_BYTES)]
    pub max_config_total_bytes: u64,
    /// Most YAML documents in all config files together.
    #[arg(long, env = "MAX_CONFIG_DOCUMENTS", default_value_t = crate::config::source_dir::DEFAULT_MAX_DOCUMENTS)]
    pub max_config_documents: usize,
    /// Connections served at once; further clients wait in the accept queue until one closes.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 16_384)]
    pub max_connections: usize,
    /// Largest non-streamed upstream reply in bytes (64 MiB: chat replies are kilobytes, the
    /// largest OpenAI embeddings batch in base64 is about 34 MB). A longer reply is refused
    /// with a 502 naming this setting and its connection closed unread.
    #[arg(
        long,
        env = "MAX_UPSTREAM_BODY_BYTES",
        default_value_t = crate::providers::upstream::DEFAULT_MAX_BODY_BYTES
    )]
    pub max_upstream_body_bytes: usize,
    /// Largest single event of a translated upstream stream in bytes (1 MiB; events are
    /// hundreds of bytes). A longer one ends the stream with an error event naming this
    /// setting. Pass-through streams are relayed as they arrive and need no cap.
    #[arg(
        long,
        env = "MAX_UPSTREAM_EVENT_BYTES",
        default_value_t = crate::providers::upstream::DEFAULT_MAX_EVENT_BYTES
    )]
    pub max_upstream_event_bytes: usize,
    /// Idle keep-alive connections kept per upstream origin; one released beyond it is closed.
    #[arg(
        long,
        env = "UPSTREAM_POOL_MAX_IDLE_PER_HOST",
        default_value_t = crate::upstream_http::DEFAULT_MAX_IDLE_PER_ORIGIN
    )]
    pub upstream_pool_max_idle_per_host: usize,
    /// Offer HTTP/2 to upstreams by ALPN (through the general-purpose client, which runs each
    /// connection in a task of its own). Off: HTTP/1.1 connections driven in the request's task.
    #[arg(long, env = "UPSTREAM_HTTP2", default_value_t = false, action = clap::ArgAction::Set)]
    pub upstream_http2: bool,
    /// After SIGTERM: time between readiness turning false and the listener closing (lets
    /// load balancers stop sending new connections), e.g. "5s".
    #[arg(long, env = "SHUTDOWN_DELAY", default_value = "0s")]
    pub shutdown_delay: humantime::Duration,
    /// After the listener closes: how long in-flight requests and streams may finish.
    #[arg(long, env = "DRAIN_TIMEOUT", default_value = "30s")]
    pub drain_timeout: humantime::Duration,
    /// Disconnect a client whose connection accepts no data for this long (a client that
    /// stopped reading a stream), e.g. "30s".
    #[arg(long, env = "WRITE_TIMEOUT", default_value = "30s")]
    pub write_timeout: humantime::Duration,
    /// Retry failed upstream attempts (per RoutePolicy `retry`); `false` sends each request once.
    #[arg(long, env = "RETRY_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub retry_enabled: bool,
    /// Let circuit breakers refuse traffic to failing targets.
    #[arg(long, env = "CIRCUIT_BREAKER_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub circuit_breaker_enabled: bool,
    /// HS256 secret for JSON Web Tokens (at least 32 bytes); standalone mode, used when the
    /// config directory's LlmGateway sets no `spec.auth.jwt`.
    #[arg(long, env = "JWT_SECRET_KEY", hide_env_values = true)]
    pub jwt_secret_key: Option<String>,
    /// JWKS URL for RS256/ES256 tokens (instead of `JWT_SECRET_KEY`).
    #[arg(long, env = "JWT_JWKS_URL")]
    pub jwt_jwks_url: Option<String>,
    /// Required `iss` of tokens.
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Accepted `aud` values, comma-separated.
    #[arg(long, env = "JWT_AUDIENCES", value_delimiter = ',')]
    pub jwt_audiences: Vec<String>,
    /// Claim naming the caller's team (defaults to `sub`).
    #[arg(long, env = "JWT_TEAM_CLAIM")]
    pub jwt_team_claim: Option<String>,
    /// Let `JWT_JWKS_URL` reach loopback, private, link-local or metadata addresses.
    #[arg(long, env = "JWT_ALLOW_LOCAL_ADDRESSES", default_value_t = false, action = clap::ArgAction::Set)]
    pub jwt_allow_local_addresses: bool,
    /// Secret mixed into API-key hashes (must match the operator's in Kubernetes mode).
    /// Required once any API key is configured, outside `--dev`.
    #[arg(
        long,
        env = "API_KEY_PEPPER",
        default_value = "",
        hide_env_values = true
    )]
    pub api_key_pepper: String,
    /// Dev mode, for trying the gateway on a laptop: serves the repository's example key and
    /// runs without `API_KEY_PEPPER` (both refused otherwise), with a warning at start.
    #[arg(long, env = "DEV_MODE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub dev: bool,
    /// Where rate limits, budgets and usage live: `memory` (per replica) or `redis` (shared by
    /// every replica; needs `REDIS_URL`). Defaults to `redis` when `REDIS_URL` is set.
    #[arg(long, env = "RATE_LIMIT_STORAGE", value_enum)]
    pub rate_limit_storage: Option<LimitStorage>,
    /// Redis URL, `redis://[:password@]host:port[/db]`; with `REDIS_CLUSTER`, seed nodes of the
    /// cluster separated by commas (one is enough).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// `REDIS_URL` is a Redis Cluster (or Valkey in cluster mode): each account's keys live in
    /// one hash slot and scripts run per slot (see docs/limits.md).
    #[arg(long, env = "REDIS_CLUSTER", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub redis_cluster: bool,
    /// While Redis is unreachable: `failOpen` limits each replica to its share of every limit,
    /// `failClosed` refuses limited requests with a fast 503.
    #[arg(
        long,
        env = "REDIS_ON_UNAVAILABLE",
        value_enum,
        default_value = "failOpen"
    )]
    pub redis_on_unavailable: OnUnavailableArg,
    /// Longest wait for one Redis call before the fallback applies, e.g. "20ms".
    #[arg(long, env = "REDIS_TIMEOUT", default_value = "20ms")]
    pub redis_timeout: humantime::Duration,
    /// Gateway replicas sharing the limits (the local fallback admits `limit / replicas`).
    #[arg(long, env = "GATEWAY_REPLICAS", default_value_t = 1)]
    pub gateway_replicas: u64,
    /// Usage events (`USAGE_EVENTS_*`).
    #[command(flatten)]
    pub usage_events: crate::usage_events::Settings,
}

/// Where limits are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LimitStorage {
    /// In this process.
    Memory,
    /// In Redis.
    Redis,
}

/// `REDIS_ON_UNAVAILABLE` values (the LlmGateway's `spec.redis.onUnavailable`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OnUnavailableArg {
    /// Serve with per-replica limits.
    #[value(name = "failOpen")]
    FailOpen,
    /// Refuse with 503.
    #[value(name = "failClosed")]
    FailClosed,
}

impl ServeArgs {
    /// The CORS settings.
    pub fn cors(&self) -> crate::http::cors::CorsSettings {
        crate::http::cors::CorsSettings {
            allowed_origins: self
                .cors_allowed_origins
                .iter()
                .map(|o| o.trim().to_owned())
                .filter(|o| !o.is_empty())
                .collect(),
            allow_credentials: self.cors_allow_credentials,
            max_age: *self.cors_max_age,
        }
    }

    /// Caps on the configuration directory.
    pub fn config_limits(&self) -> crate::config::source_dir::DirLimits {
        crate::config::source_dir::DirLimits {
            file_bytes: self.max_config_file_bytes,
            total_bytes: self.max_config_total_bytes,
            documents: self.max_config_documents,
        }
    }

    /// The caps on upstream replies held in memory.
    pub fn upstream_limits(&self) -> crate::providers::upstream::UpstreamLimits {
        crate::providers::upstream::UpstreamLimits {
            body_bytes: self.max_upstream_body_bytes,
            event_bytes: self.max_upstream_event_bytes,
        }
    }

    /// How upstream connections are made and kept.
    pub fn transport(&self) -> crate::upstream_http::TransportSettings {
        crate::upstream_http::TransportSettings {
            pool: crate::upstream_http::PoolLimits {
                max_idle_per_origin: self.upstream_pool_max_idle_per_host,
                idle_timeout: crate::upstream_http::IDLE_TIMEOUT,
            },
            http2: self.upstream_http2,
        }
    }

    /// The limiter settings, validated.
    pub fn limiter(&self) -> Result<crate::limits::LimiterSettings, String> {
        use llm_gateway_crds::llm_gateway::OnUnavailable;
        let redis_url = match (self.rate_limit_storage, &self.redis_url) {
            (Some(LimitStorage::Memory), _) => None,
            (Some(LimitStorage::Redis), None) => {
                return Err("RATE_LIMIT_STORAGE=redis needs REDIS_URL".to_owned());
            }
            (_, url) => url.clone(),
        };
        Ok(crate::limits::LimiterSettings {
            redis_url,
            on_unavailable: match self.redis_on_unavailable {
                OnUnavailableArg::FailOpen => OnUnavailable::FailOpen,
                OnUnavailableArg::FailClosed => OnUnavailable::FailClosed,
            },
            redis_timeout: *self.redis_timeout,
            redis_cluster: self.redis_cluster,
            replicas: self.gateway_replicas.max(1),
        })
    }

    /// Where Responses are kept for continuations: Redis when `REDIS_URL` is set.
    pub fn response_store(&self) -> crate::response_store::StoreSettings {
        crate::response_store::StoreSettings {
            ttl: *self.response_store_ttl,
            max_bytes: self.response_store_max_bytes,
            redis_url: self.redis_url.clone(),
            redis_cluster: self.redis_cluster,
            redis_timeout: *self.redis_timeout,
        }
    }

    /// The JWT settings given by flags or environment, validated.
    pub fn jwt(&self) -> Result<Option<llm_gateway_crds::compiled::CompiledJwt>, String> {
        use llm_gateway_crds::compiled::{CompiledJwt, JwtKey, SecretString};
        let key = match (&self.jwt_secret_key, &self.jwt_jwks_url) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => {
                return Err("set only one of JWT_SECRET_KEY and JWT_JWKS_URL".to_owned());
            }
            (Some(secret), None) if secret.len() < 32 => {
                return Err("JWT_SECRET_KEY must be at least 32 bytes".to_owned());
            }
            (Some(secret), None) => JwtKey::Hs256(SecretString::new(secret.clone())),
            (None, Some(url)) => JwtKey::Jwks(url.clone()),
        };
        let issuer = self
            .jwt_issuer
            .clone()
            .ok_or("JWT_ISSUER is required with JWT authentication")?;
        if self.jwt_audiences.is_empty() {
            return Err("JWT_AUDIENCES is required with JWT authentication".to_owned());
        }
        Ok(Some(CompiledJwt {
            issuer,
            audiences: self.jwt_audiences.clone(),
            key,
            team_claim: self.jwt_team_claim.clone(),
            allow_local_addresses: self.jwt_allow_local_addresses,
        }))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn upstream_limits_come_from_their_flags() {
        let cli = Cli::try_parse_from([
            "llm-gateway",
            "--max-upstream-body-bytes",
            "4096",
            "--max-upstream-event-bytes",
            "512",
        ])
        .expect("valid flags");
        let limits = cli.serve.upstream_limits();
        assert_eq!((limits.body_bytes, limits.event_bytes), (4096, 512));
    }
}
