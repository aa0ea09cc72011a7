//! The red-team suite's harness (see `liqoctl/tests/red_team.rs`): one provider host for the
//! whole binary, peering identities made by the real `liqoctl generate peer-command`, their real
//! tokens, and the checks every attack shares.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::ServiceCIDR;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use liqo_host::api::namespace_map::{MappingPhase, RemoteNamespaceStatus};
use liqo_host::api::wire;
use liqo_host::protocol::{endpoint_ranges, identity, lease, twin_requests};
use serde_json::{Value, json};
use testsupport::{TestEnv, eventually, output_text as text};

use crate::common::{PeerArgs, host_log, liqo_host_bin, parse_peer_command, run_liqoctl};

/// The provider every attack targets; london is never needed (a consumer id is only a string
/// the identity claims).
pub const PROVIDER: &str = "newyork";
/// Waits for the provider's host (it answers a NamespaceMap change at once).
pub const WAIT: Duration = Duration::from_secs(60);
/// The endpoint ranges every consumer declares when it claims (london's pod range in testenv).
pub const CONSUMER_PODS: &str = "10.200.0.0/16";
/// The labels the admission policy trusts on a twin namespace and asks of every object in it.
pub const ORIGIN: &str = "offloading.liqo.io/origin";
pub const DESTINATION: &str = "offloading.liqo.io/destination";

/// Tests that need the provider's default limits (every test that asks for twin namespaces or
/// writes in one) take it for reading; the one that changes ConfigMap liqo/liqo-peering-limits
/// takes it for writing. (An async lock: tests hold it across requests, and a panicking test
/// releases it as it unwinds, so there is no poisoning to recover from.)
pub static LIMITS: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// The shared provider, ready: CRDs, namespace liqo and the identity ConfigMap installed,
/// newyork's host running (revocation grace 5 s) for the rest of the binary, and the peering
/// policies applied and enforced. Returns the environment and an admin client of newyork.
pub async fn provider() -> (&'static TestEnv, Client) {
    static READY: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    let env = TestEnv::shared();
    READY.get_or_init(|| prepare(env)).await;
    (env, env.client(PROVIDER).await)
}

async fn prepare(env: &'static TestEnv) {
    let admin = env.client(PROVIDER).await;
    crate::common::install_liqo(&admin, PROVIDER).await;
    start_host(env);
    policies_enforced(env, &admin).await;
}

/// Starts newyork's host once for the binary. Statics are never dropped, so a `KillOnDrop`
/// would never fire: a shell watchdog kills the host once this test process is gone.
fn start_host(env: &TestEnv) {
    static HOST: OnceLock<Mutex<Child>> = OnceLock::new();
    HOST.get_or_init(|| {
        let script = r#""$LIQO_HOST" run --kubeconfig "$HOST_KUBECONFIG" --cluster-id newyork \
  --no-leader-election --metrics-addr 127.0.0.1:0 --peering-revocation-grace 5s \
  --plugin-cache-dir "$PLUGIN_CACHE" >/dev/null 2>>"$HOST_LOG" &
host=$!
while kill -0 "$OWNER_PID" 2>/dev/null && kill -0 "$host" 2>/dev/null; do sleep 1; done
kill "$host" 2>/dev/null"#;
        let log = host_log(env, PROVIDER);
        eprintln!("red team: newyork's host logs to {}", log.display());
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("LIQO_HOST", liqo_host_bin())
            .env("HOST_KUBECONFIG", env.kubeconfig_path(PROVIDER))
            .env("PLUGIN_CACHE", env.dir().join("plugin-cache"))
            .env("HOST_LOG", &log)
            .env("OWNER_PID", std::process::id().to_string())
            .env("RUST_LOG", "info")
            .env_remove("KUBECONFIG")
            .env_remove("POD_NAME")
            .stdin(Stdio::null())
            .spawn()
            .expect("starting liqo-host through sh");
        Mutex::new(child)
    });
}

/// The first `generate peer-command` applies `deploy/peering/`; the API server enforces new
/// admission policies a moment later. Until both the tenant policy and the claims policy (the
/// one with parameters, synced last) refuse what they must, no attack is meaningful. Then the
/// host must be up: a probe tenant gets a twin namespace (the first start of the host can take
/// a while on a loaded machine), and releases its identity.
async fn policies_enforced(env: &'static TestEnv, admin: &Client) {
    let mut probe = Tenant::generate(env, "rt-probe", false).await;
    let leases = Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(
        probe.peer.clone(),
        &probe.name,
    );
    eventually(
        "the liqo-peering-tenant policy to be enforced",
        WAIT,
        || async {
            // A new value each time: once a value went through, writing it again changes
            // nothing and the policy rightly lets it be.
            let value = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
                .to_string();
            match leases
                .patch(
                    wire::LEASE_NAME,
                    &PatchParams::default(),
                    &Patch::Merge(
                        json!({"metadata": {"annotations": {"example.com/probe": value}}}),
                    ),
                )
                .await
            {
                Err(kube::Error::Api(s)) if s.message.contains("belong to the provider") => {
                    Some(())
                }
                Ok(_) => None,
                Err(e) => panic!("probing the tenant policy: {e}"),
            }
        },
    )
    .await;
    let bound = Tenant::generate(env, "rt-probe-bound", true).await;
    let mut doomed = vec![bound.name.clone()];
    for attempt in 0.. {
        // A claim that passes is spent (the holder is fixed once set): a new tenant each time.
        let claimant = Tenant::generate(env, "rt-probe-claimant", false).await;
        doomed.push(claimant.name.clone());
        match lease::renew_lease(&claimant.peer, &claimant.name, "rt-probe-bound").await {
            Err(kube::Error::Api(s)) if s.message.contains("already peered") => break,
            Ok(_) if attempt < 60 => tokio::time::sleep(Duration::from_millis(500)).await,
            Ok(_) => panic!("the liqo-peering-claims policy is still not enforced after 30 s"),
            Err(e) => panic!("probing the claims policy: {e}"),
        }
    }
    for ns in doomed {
        match Api::<Namespace>::all(admin.clone())
            .delete(&ns, &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => panic!("deleting probe tenant {ns}: {e}"),
        }
    }
    probe.claim(admin).await;
    let answer = eventually(
        "newyork's host to answer its first NamespaceMap (is it running? see its log)",
        Duration::from_secs(240),
        || async {
            twin_requests::request_twin(&probe.peer, &probe.name, "rt-probe", "rt-probe-twin")
                .await
                .unwrap()
        },
    )
    .await;
    assert_eq!(answer.phase, MappingPhase::Accepted, "{answer:?}");
    probe.stop_renewing();
    // Unpeering: the host revokes the identity and its twin at once.
    lease::release_lease(&probe.peer, &probe.name)
        .await
        .unwrap();
}

/// A peering identity made by the real `liqoctl generate peer-command` on newyork.
pub struct Tenant {
    /// The tenant namespace.
    pub name: String,
    /// The consumer id this test claims with it.
    pub id: String,
    /// The printed command's flags (URL, CA, token).
    pub args: PeerArgs,
    /// A client authenticated with the printed token.
    pub peer: Client,
    renewer: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Tenant {
    fn drop(&mut self) {
        self.stop_renewing();
    }
}

impl Tenant {
    /// Runs `liqoctl generate peer-command --only-command` (with `--consumer id` when `bind`).
    pub async fn generate(env: &'static TestEnv, id: &str, bind: bool) -> Tenant {
        let mut args = vec!["generate", "peer-command", "--only-command"];
        if bind {
            args.extend(["--consumer", id]);
        }
        let out = liqoctl(env, &args).await;
        assert!(
            out.status.success(),
            "generate peer-command for {id}: {}",
            text(&out)
        );
        let args = parse_peer_command(&String::from_utf8_lossy(&out.stdout));
        let name = tenant_of_token(&args.token);
        let peer = token_client(&args.url, &args.ca, &args.token).await;
        Tenant {
            name,
            id: id.to_string(),
            args,
            peer,
            renewer: None,
        }
    }

    /// Claims the identity for `self.id` with the token, declaring [`CONSUMER_PODS`] as its
    /// endpoint ranges (as `liqoctl peer` and the consumer's host do), waits until the
    /// provider's host has bound the id to this tenant namespace, and keeps the Lease renewed
    /// (every 20 s; it lasts 90) until the tenant is dropped.
    pub async fn claim(&mut self, admin: &Client) {
        lease::renew_lease_announcing(
            &self.peer,
            &self.name,
            &self.id,
            endpoint_ranges::lease_annotation(Some(CONSUMER_PODS)),
        )
        .await
        .unwrap_or_else(|e| panic!("{} claims {}: {e}", self.name, self.id));
        let namespaces: Api<Namespace> = Api::all(admin.clone());
        eventually(
            &format!("newyork to bind consumer id {} to {}", self.id, self.name),
            WAIT,
            || async {
                let ns = namespaces.get(&self.name).await.ok()?;
                (ns.labels().get(wire::CONSUMER_ID_LABEL) == Some(&self.id)).then_some(())
            },
        )
        .await;
        eventually(
            &format!("newyork to record the endpoint ranges {} declared", self.id),
            WAIT,
            || async {
                let ns = namespaces.get(&self.name).await.ok()?;
                let recorded = ns.annotations().get(wire::RECORDED_RANGES_ANNOTATION)?;
                (recorded == CONSUMER_PODS).then_some(())
            },
        )
        .await;
        let (peer, name, id) = (self.peer.clone(), self.name.clone(), self.id.clone());
        self.renewer = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(20)).await;
                if let Err(e) = lease::renew_lease(&peer, &name, &id).await {
                    eprintln!("red team: renewing {name} for {id}: {e}");
                }
            }
        }));
    }

    /// Stops renewing the Lease (the consumer's host went away).
    pub fn stop_renewing(&mut self) {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
    }

    /// Asks for twin namespace `remote` of local namespace `local` through the NamespaceMap
    /// (with the token) and returns the provider's first answer.
    pub async fn ask(&self, local: &str, remote: &str) -> RemoteNamespaceStatus {
        eventually(
            &format!("newyork to answer {}'s request for twin {remote}", self.id),
            WAIT,
            || async {
                twin_requests::request_twin(&self.peer, &self.name, local, remote)
                    .await
                    .unwrap_or_else(|e| panic!("{} asks for twin {remote}: {e}", self.id))
                    .filter(|a| a.phase != MappingPhase::Terminating)
            },
        )
        .await
    }

    /// [`Tenant::ask`], asserting that the provider accepted (created and bound) the twin.
    pub async fn twin(&self, local: &str, remote: &str) {
        let answer = self.ask(local, remote).await;
        assert_eq!(
            answer.phase,
            MappingPhase::Accepted,
            "{} asked for twin namespace {remote}: {answer:?}",
            self.id
        );
    }
}

/// Runs liqoctl against newyork off the async runtime (the tenants' renewals keep running).
pub async fn liqoctl(env: &'static TestEnv, args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_liqoctl(env, PROVIDER, &args)
    })
    .await
    .unwrap()
}

/// The tenant namespace of a peering token: the namespace of its ServiceAccount (`sub`).
fn tenant_of_token(token: &str) -> String {
    let payload = token.split('.').nth(1).expect("a JWT");
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .expect("a base64url JWT payload"),
    )
    .expect("JSON claims");
    let sub = claims["sub"].as_str().expect("a sub claim");
    identity::tenant_of_username(sub)
        .unwrap_or_else(|| panic!("{sub} is not a peering identity"))
        .to_string()
}

pub use crate::common::token_client;

/// A token (TokenRequest, 1 hour) of ServiceAccount `namespace/name`, asked by `client`.
pub async fn sa_token(client: &Client, namespace: &str, name: &str) -> kube::Result<String> {
    let request: TokenRequest = serde_json::from_value(json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600},
    }))
    .unwrap();
    let answer: TokenRequest = Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create_subresource("token", name, &PostParams::default(), &request)
        .await?;
    Ok(answer.status.map(|s| s.token).unwrap_or_default())
}

/// Asserts that the API server refused `result` with one of `codes` and a message containing
/// `expect`; `attack` names the attack in the failure message.
#[track_caller]
pub fn refused<T: std::fmt::Debug>(
    result: kube::Result<T>,
    codes: &[u16],
    expect: &str,
    attack: &str,
) {
    match result {
        Ok(v) => panic!("attack allowed: {attack} (expected a refusal saying {expect:?}): {v:?}"),
        Err(kube::Error::Api(s)) => {
            assert!(
                codes.contains(&s.code),
                "{attack}: refused with {} instead of {codes:?}: {}",
                s.code,
                s.message
            );
            assert!(
                s.message.contains(expect),
                "{attack}: the refusal {:?} does not say {expect:?}",
                s.message
            );
            // Word for word, for the record (`-- --nocapture`).
            eprintln!("red team: refused: {attack}: {} {}", s.code, s.message);
        }
        Err(e) => panic!("{attack}: unexpected error {e}"),
    }
}

/// What a user compares to see that a namespace was left alone.
#[derive(Debug, Clone, PartialEq)]
#[allow(
    dead_code,
    reason = "compared whole (PartialEq) and printed (Debug) on failure"
)]
pub struct NsState {
    pub uid: String,
    pub resource_version: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub terminating: bool,
}

pub async fn ns_state(admin: &Client, name: &str) -> Option<NsState> {
    let ns = Api::<Namespace>::all(admin.clone())
        .get_opt(name)
        .await
        .unwrap_or_else(|e| panic!("reading namespace {name}: {e}"))?;
    Some(NsState {
        uid: ns.uid().unwrap_or_default(),
        resource_version: ns.resource_version().unwrap_or_default(),
        labels: ns.labels().clone(),
        annotations: ns.annotations().clone(),
        terminating: ns.metadata.deletion_timestamp.is_some(),
    })
}

/// The state of each named namespace (which must exist).
pub async fn ns_states(admin: &Client, names: &[&str]) -> BTreeMap<String, NsState> {
    let mut out = BTreeMap::new();
    for name in names {
        let state = ns_state(admin, name)
            .await
            .unwrap_or_else(|| panic!("namespace {name} does not exist"));
        out.insert(name.to_string(), state);
    }
    out
}

/// Creates namespace `name` as newyork's admin (a namespace no peering made).
pub async fn admin_namespace(admin: &Client, name: &str) {
    let ns: Namespace = serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"team": "red-team-victim"}}}),
    )
    .unwrap();
    Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
}

/// Names of the namespaces labelled `selector`.
pub async fn namespaces_labelled(admin: &Client, selector: &str) -> Vec<String> {
    Api::<Namespace>::all(admin.clone())
        .list(&ListParams::default().labels(selector))
        .await
        .unwrap()
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect()
}

/// The labels a consumer's reflected objects carry in its twin namespaces on newyork.
pub fn owned_labels(id: &str) -> Value {
    json!({ORIGIN: id, DESTINATION: PROVIDER})
}

/// A Service named `name` with `labels`, its `spec` merged over one TCP port.
pub fn service(name: &str, labels: Value, spec: Value) -> k8s_openapi::api::core::v1::Service {
    let mut full = json!({"ports": [{"port": 80, "protocol": "TCP"}]});
    merge(&mut full, &spec);
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "labels": labels}, "spec": full}))
    .unwrap()
}

/// An EndpointSlice named `name` with `labels`, one endpoint at `address`.
pub fn slice(name: &str, labels: Value, address_type: &str, address: &str) -> EndpointSlice {
    serde_json::from_value(
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "labels": labels},
        "addressType": address_type,
        "endpoints": [{"addresses": [address]}],
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}),
    )
    .unwrap()
}

/// The address type of an EndpointSlice holding `ip`.
pub fn address_type(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() { "IPv4" } else { "IPv6" }
}

/// JSON merge patch (RFC 7386) of `patch` onto `target`, as the API server applies a
/// `application/merge-patch+json` body.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let target = target.as_object_mut().unwrap();
    for (k, v) in patch {
        if v.is_null() {
            target.remove(k);
        } else {
            merge(target.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

// ---- newyork's own addresses ----------------------------------------------------------------

/// The addresses of newyork's API server: the `kubernetes` Service's EndpointSlices.
pub async fn api_server_addresses(admin: &Client) -> Vec<IpAddr> {
    Api::<EndpointSlice>::namespaced(admin.clone(), "default")
        .list(&ListParams::default().labels("kubernetes.io/service-name=kubernetes"))
        .await
        .unwrap()
        .items
        .into_iter()
        .flat_map(|s| s.endpoints)
        .flat_map(|e| e.addresses)
        .filter_map(|a| a.parse().ok())
        .collect()
}

/// newyork's Service ranges (networking.k8s.io/v1 ServiceCIDR).
pub async fn service_cidrs(admin: &Client) -> Vec<String> {
    Api::<ServiceCIDR>::all(admin.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.spec)
        .flat_map(|s| s.cidrs.unwrap_or_default())
        .collect()
}

/// The ranges the design denies a peer's endpoints: loopback, "this network", link-local
/// (cloud metadata), multicast, broadcast, unspecified, NAT64, the metadata services outside
/// link-local, plus the provider's Service ranges and API server addresses. Written from the
/// design, not read from the implementation.
pub async fn denied_ranges(admin: &Client) -> Vec<String> {
    let mut ranges: Vec<String> = [
        "0.0.0.0/8",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "224.0.0.0/4",
        "255.255.255.255/32",
        "168.63.129.16/32",
        "::/128",
        "::1/128",
        "fe80::/10",
        "ff00::/8",
        "64:ff9b::/96",
        "fd00:ec2::254/128",
    ]
    .map(String::from)
    .to_vec();
    ranges.extend(service_cidrs(admin).await);
    for ip in api_server_addresses(admin).await {
        ranges.push(format!("{ip}/{}", if ip.is_ipv4() { 32 } else { 128 }));
    }
    ranges
}

/// Whether `ip` is inside `cidr` (`a.b.c.d/n` or an IPv6 prefix).
pub fn cidr_contains(cidr: &str, ip: IpAddr) -> bool {
    let Some((net, bits)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// An address inside `cidr`: its network address plus 10.
pub fn address_in(cidr: &str) -> IpAddr {
    let (net, _) = cidr.split_once('/').expect("a CIDR");
    match net.parse::<IpAddr>().expect("a CIDR address") {
        IpAddr::V4(n) => IpAddr::V4((u32::from(n) + 10).into()),
        IpAddr::V6(n) => IpAddr::V6((u128::from(n) + 10).into()),
    }
}

// ---- the provider's limits -------------------------------------------------------------------

/// Sets ConfigMap liqo/liqo-peering-limits for one test and puts back what was there when
/// dropped, even when the test fails (blocking `kubectl`: a destructor cannot await).
pub struct LimitsGuard {
    env: &'static TestEnv,
    original: Option<Value>,
}

impl LimitsGuard {
    pub async fn set(env: &'static TestEnv, admin: &Client, data: Value) -> LimitsGuard {
        let api = Api::<ConfigMap>::namespaced(admin.clone(), "liqo");
        let original = api
            .get_opt(liqo_host::api::wire::LIMITS_CONFIGMAP)
            .await
            .unwrap()
            .map(|cm| {
                json!({
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": liqo_host::api::wire::LIMITS_CONFIGMAP, "namespace": "liqo",
                                 "labels": cm.labels(), "annotations": cm.annotations()},
                    "data": cm.data,
                })
            });
        let guard = LimitsGuard { env, original };
        api.patch(
            liqo_host::api::wire::LIMITS_CONFIGMAP,
            &PatchParams::apply("red-team").force(),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": liqo_host::api::wire::LIMITS_CONFIGMAP, "namespace": "liqo"},
                "data": data,
            })),
        )
        .await
        .unwrap();
        guard
    }
}

impl Drop for LimitsGuard {
    fn drop(&mut self) {
        let name = liqo_host::api::wire::LIMITS_CONFIGMAP;
        let out = match &self.original {
            None => self.env.kubectl(
                PROVIDER,
                [
                    "delete",
                    "configmap",
                    "--namespace",
                    "liqo",
                    name,
                    "--ignore-not-found",
                ],
            ),
            Some(original) => {
                let file = self.env.dir().join("red-team-limits.json");
                std::fs::write(&file, original.to_string()).unwrap();
                self.env
                    .kubectl(PROVIDER, ["replace", "-f", file.to_str().unwrap()])
            }
        };
        if !out.status.success() {
            eprintln!(
                "red team: could not restore ConfigMap liqo/{name}: {}",
                text(&out)
            );
        }
    }
}
