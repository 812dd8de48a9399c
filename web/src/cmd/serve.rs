//! `airlock serve`: the mirror itself.

use std::path::PathBuf;
use std::process::ExitCode;

use actix_web::{web, App, HttpServer};
use anyhow::Context;

/// Arguments of `airlock serve`.
#[derive(clap::Args, Debug)]
#[command(after_long_help = SERVE_HELP)]
pub struct ServeArgs {
    /// TOML config file (see deploy/airlock.example.toml); without one, embedded defaults apply.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Listen address (overrides `listen` and AIRLOCK_LISTEN).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Data directory (overrides `data_dir` and AIRLOCK_DATA_DIR).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

const SERVE_HELP: &str = "\
Defaults (no config at all): listen 127.0.0.1:8080, data in ./airlock-data, upstreams
https://huggingface.co and https://registry.ollama.ai, policy mode allowlist with no rules
(everything refused until allowed).

Config keys (TOML; every key optional; deploy/airlock.example.toml explains each):
  listen = \"127.0.0.1:8080\"
  data_dir = \"airlock-data\"
  trusted_proxies = [\"10.0.0.0/8\"]                  proxies whose X-Forwarded-*/Forwarded count
  offline = false                                    true: never contact an upstream (air gap)
  [huggingface]
  upstream = \"https://huggingface.co\"
  redirect_hosts = [\"cdn-lfs.huggingface.co\", ...]   host[:port]s upstream redirects may go to
  token_file = \"/run/secrets/hf-token\"               upstream token (or token = \"...\")
  revision_ttl_secs = 300                            how long a branch->commit resolution is reused
  tree_page_size = 1000                              entries per page of /tree listings
  [ollama]
  upstream = \"https://registry.ollama.ai\"
  redirect_hosts = [\"<R2 bucket host>\"]              host[:port]s blob redirects may go to
  token_file = \"/run/secrets/ollama-token\"           upstream bearer token (or token = \"...\")
  blob_url = \"http://blobs.airlock.example:8080\"     where blob GETs redirect (another hostname)
  tag_ttl_secs = 300                                 how long a tag->manifest resolution is reused
  [fetch]
  connections = 8                                    parallel ranged connections per large file
  stall_timeout_secs = 60                            fail a fetch below 1 KiB/s for this long
  [governance]
  keys = [\"/etc/airlock/governance.pub\"]             trusted approval-signing keys
  [[governance.revoked_keys]]                        key = \"old.pub\", since = \"<RFC 3339>\": records
                                                     signed from then on no longer count
  admin_token_file = \"/run/secrets/airlock-admin\"    enables /admin (or admin_token = \"...\")
  public_url = \"https://airlock.example\"             shown in \"request … pending review at …\"
  prefetch_requests = true                           fetch + scan requested versions in background
  prefetch_max_bytes = 2147483648                    …up to this size per version
  download_audit_window_secs = 60                    repeats of a download in this window: one count
  requests_per_client_hour = 100                     new review requests one client may cause
  max_requests = 10000                               review-request records kept at most
  prefetch_quota_bytes = 21474836480                 review prefetch bytes per rolling day
  [store]
  max_bytes = 500000000000                           evict least recently served unneeded blobs
  [airgap]
  trusted_exporters = [\"/etc/airlock/dmz.pub\"]      mirror.pub keys whose bundles import accepts
  [policy]
  mode = \"allowlist\"                                 or \"open\"
  licenses = [\"apache-2.0\", \"mit\"]                   approvable without an override
  [[policy.allow]]
  hf = \"org/repo\"                                    or \"datasets/org/repo\", \"org/*\", \"gpt2\"
  revision = \"<40-hex commit>\"                       optional pin; the repo is served only at it
  allow_pr_refs = true                               serve refs/pr/N (off: anyone can open a PR)
  [[policy.allow]]
  ollama = \"library/llama3\"                          or \"namespace/*\"
  tag = \"8b\"                                         optional: only this tag
  manifest = \"sha256:<64 hex>\"                       optional pin of that tag's manifest
  [[trust]]
  match = \"nvidia/*\"                                 repos that must be signed
  require = \"model-signing\"                          or \"pgp\" or \"none\"
  keys = [\"nvidia.pub.pem\"]                          or cert_roots, or identity+issuer+trusted_root,
                                                     or pgp_keys (+ signature, manifest)
  [scan]
  allow_globals = [\"mypkg.models.Config\"]          own pickle classes to admit (audited)
  [[clients]]
  name = \"ci-bot\"                                   audited under this name (requests, downloads)
  token_sha256 = \"<64 hex>\"                          sha256 of the token the client sends
  roles = [\"admin\"]                                  optional: reviewer, admin
  ollama_keys = [\"ssh-ed25519 AAAA…\"]                ollama's key (~/.ollama/id_ed25519.pub)
  [log]
  format = \"json\"                                   or \"text\"; request ids on every line
  level = \"info\"                                    a tracing filter (RUST_LOG wins)
  [metrics]
  token_file = \"/run/secrets/airlock-metrics\"      bearer token /metrics requires (or token)
  [tls]
  cert_file = \"/etc/airlock/tls/airlock.crt\"        serve HTTPS (PEM; reloaded on SIGHUP or change)
  key_file = \"/etc/airlock/tls/airlock.key\"
  plain_listen = \"0.0.0.0:8081\"                     plain HTTP for GET /healthz only
  [upstream]
  proxy = \"http://proxy.corp:3128\"                  else HTTPS_PROXY/HTTP_PROXY/NO_PROXY apply
  ca_files = [\"/etc/airlock/corp-root.pem\"]         extra roots (a TLS-inspecting proxy's CA)
  use_system_roots = false                           also trust the OS certificate store

Environment overrides (higher precedence than the file; flags are higher still):
  AIRLOCK_LISTEN, AIRLOCK_DATA_DIR, AIRLOCK_HF_UPSTREAM, AIRLOCK_HF_REDIRECT_HOSTS (comma-separated),
  AIRLOCK_HF_TOKEN, AIRLOCK_HF_TOKEN_FILE, AIRLOCK_OLLAMA_UPSTREAM, AIRLOCK_OLLAMA_REDIRECT_HOSTS,
  AIRLOCK_OLLAMA_TOKEN, AIRLOCK_OLLAMA_TOKEN_FILE, AIRLOCK_OLLAMA_BLOB_URL, AIRLOCK_POLICY_MODE,
  AIRLOCK_ADMIN_TOKEN, AIRLOCK_ADMIN_TOKEN_FILE, AIRLOCK_PUBLIC_URL, AIRLOCK_GOVERNANCE_KEYS,
  AIRLOCK_TRUSTED_PROXIES (comma-separated), AIRLOCK_OFFLINE, AIRLOCK_TRUSTED_EXPORTERS,
  AIRLOCK_FETCH_CONNECTIONS, AIRLOCK_FETCH_STALL_TIMEOUT_SECS

Governance web UI: http://<listen>/ui/ (admin token, or a [[clients]] token with the reviewer role).
Clients: HF_ENDPOINT=http://<listen> for huggingface_hub, transformers and datasets;
`ollama pull --insecure <listen>/library/llama3:8b` for ollama (the namespace is required).
Operations: GET /healthz (alive), /readyz (503 naming the failing check), /metrics (Prometheus).
Logs go to stderr; RUST_LOG=debug for more.";

/// Runs the server until interrupted.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = mirror::Config::load(args.config.as_deref(), |k| std::env::var(k).ok())?;
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    if let Some(d) = args.data_dir {
        cfg.data_dir = d;
    }
    crate::logging::init(Some(&cfg.log));
    // The engine (upstream fetches, hashing, scanning) runs on its own runtime so that CPU and disk
    // work never sits on the HTTP workers' event loops.
    let engine = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("airlock-engine")
        .enable_all()
        .build()
        .context("starting the engine runtime")?;
    let mirror = mirror::Mirror::open(&cfg, engine.handle().clone())?;
    // The audit log records which configuration the mirror ran with.
    let config_bytes = match &args.config {
        Some(path) => std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        None => b"(embedded defaults)".to_vec(),
    };
    mirror
        .governance()
        .audit(signing::AuditEvent::ConfigReload {
            sha256: verifier::Digest::of(&config_bytes),
        });
    tracing::info!(listen = %cfg.listen, data_dir = %cfg.data_dir.display(), upstream = %cfg.huggingface.upstream, "airlock serving");
    let data = web::Data::new(mirror.clone());
    let listen = cfg.listen;
    let oci = crate::ollama::OllamaSettings {
        blob_url: cfg.ollama.blob_url.clone(),
    };
    let hf = crate::hf::HfSettings {
        tree_page_size: cfg.huggingface.tree_page_size,
    };
    let budget = crate::body::BodyBudget::new(crate::body::PROTOCOL_BUDGET);
    // Built once: every worker shares the client registry, the grant key and the counters.
    let clients = std::sync::Arc::new(mirror::Clients::from_entries(&cfg.clients)?);
    let identity = web::Data::new(crate::client::Identity::new(
        clients.clone(),
        cfg.policy.require_client_token,
    ));
    let http_metrics = web::Data::new(crate::ops::HttpMetrics::default());
    let metrics_token = web::Data::new(crate::ops::MetricsToken(cfg.metrics.token.clone()));
    let ui = web::Data::new(crate::ui::Ui::new(&cfg, clients)?);
    let tls = match (cfg.tls.files(), cfg.tls.plain_listen) {
        (Some((cert, key)), _) => Some(crate::tls::CertStore::open(cert, key)?),
        (None, None) if cfg.tls.cert_file.is_none() && cfg.tls.key_file.is_none() => None,
        (None, _) => anyhow::bail!(
            "[tls] needs both cert_file and key_file (plain_listen only goes with them)"
        ),
    };
    if let Some(store) = &tls {
        crate::tls::watch(store.clone(), engine.handle());
    }
    let plain_listen = cfg.tls.plain_listen;
    let origin =
        crate::origin::Origin::new(cfg.governance.public_url.as_deref(), &cfg.trusted_proxies)
            .with_tls(tls.is_some());
    let result = actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            let oci = oci.clone();
            App::new()
                .app_data(data.clone())
                .app_data(web::Data::new(budget.clone()))
                .app_data(web::Data::new(origin.clone()))
                .app_data(identity.clone())
                .app_data(http_metrics.clone())
                .app_data(metrics_token.clone())
                .wrap_fn(|req, srv| {
                    use actix_web::dev::Service;
                    let begun = crate::request::begin(&req);
                    crate::request::finish(begun, srv.call(req))
                })
                .configure(crate::ops::configure)
                .configure(crate::admin::configure)
                .configure(|c| crate::ui::configure(c, ui.clone()))
                .configure(|c| crate::ollama::configure(c, oci))
                .configure(|c| crate::hf::configure(c, hf))
        })
        .on_connect(|conn, ext| {
            type Tls = actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>;
            let sock = conn
                .downcast_ref::<actix_web::rt::net::TcpStream>()
                .or_else(|| conn.downcast_ref::<Tls>().map(|t| t.get_ref().0));
            if let Some(addr) = sock.and_then(|s| s.local_addr().ok()) {
                ext.insert(crate::ollama::LocalAddr(addr));
            }
        })
        // A request's head must arrive within 5 s and a closing client is given 2 s; bodies
        // are bounded separately (crate::body), as actix has no timeout for them.
        .client_request_timeout(std::time::Duration::from_secs(5))
        .client_disconnect_timeout(std::time::Duration::from_secs(2));
        let server = match &tls {
            Some(store) => server.bind_rustls_0_23(listen, store.server_config()?),
            None => server.bind(listen),
        }
        .with_context(|| format!("binding {listen}"))?
        .run();
        let Some(plain) = plain_listen else {
            return server.await.context("server");
        };
        // Probes only: nothing else is routed here, so no token or model crosses plain HTTP.
        let health = HttpServer::new(|| {
            App::new().route(
                "/healthz",
                web::get().to(|| async {
                    actix_web::HttpResponse::Ok()
                        .content_type("text/plain")
                        .body("ok\n")
                }),
            )
        })
        .workers(1)
        .bind(plain)
        .with_context(|| format!("binding [tls] plain_listen {plain}"))?
        .run();
        futures_util::future::try_join(server, health)
            .await
            .map(|_| ())
            .context("server")
    });
    // The server has drained its requests: write the open download windows' counts.
    mirror.flush_audit();
    engine.shutdown_background();
    result.map(|()| ExitCode::SUCCESS)
}
