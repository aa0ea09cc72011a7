//! Red team: the attacks a consumer's peering identity (and a namespace admin forging one) can
//! try against a provider, each with the REAL token printed by `liqoctl generate peer-command`
//! against newyork's real API server, with newyork's real host running. Every test asserts the
//! refusal (status code and message) and that nothing changed afterwards.
//!
//! The design under attack: the identity is ServiceAccount `liqo-consumer` in a tenant namespace
//! `liqo-tenant-*`; it renews its Lease, asks for twin namespaces through its NamespaceMap, and
//! writes Services and EndpointSlices in the twins newyork's host made for it, nothing else
//! (deploy/peering/, host/src/tenant.rs, host/src/twins.rs).
//!
//! The tests share the clusters and one newyork host (started once, see `red_team/harness.rs`);
//! each has its own tenant and consumer id `rt-<attack>`. That the legitimate flow still works is
//! covered by peering.rs and seed_scenario.rs.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, ResourceQuota, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use liqo_host::api::foreign_cluster::ForeignCluster;
use liqo_host::api::namespace_map::{MappingPhase, NAMESPACE_MAP_NAME, NamespaceMap, reasons};
use liqo_host::api::wire;
use liqo_host::api::wire::LEASE_NAME;
use liqo_host::protocol::{lease, twin_requests};
use serde_json::json;
use testsupport::{eventually, output_text as text};

mod common;
#[path = "red_team/generative.rs"]
mod generative;
#[path = "red_team/harness.rs"]
mod harness;

use harness::{
    LIMITS, LimitsGuard, PROVIDER, Tenant, WAIT, address_in, address_type, admin_namespace,
    api_server_addresses, liqoctl, namespaces_labelled, ns_state, ns_states, owned_labels,
    provider, refused, sa_token, service, service_cidrs, slice, token_client,
};

/// RBAC refusals: 403 Forbidden.
const RBAC: &[u16] = &[403];
/// Refusals by a ValidatingAdmissionPolicy (no `reason` set: 422 Invalid).
const POLICY: &[u16] = &[422];

/// How a peer asks for things it has no right to: RBAC answers before any policy.
fn rbac(verb: &str, resource: &str) -> String {
    format!("cannot {verb} resource \"{resource}\"")
}

// ---- (1) namespaces ---------------------------------------------------------------------------

#[tokio::test]
async fn namespaces_cannot_be_deleted_created_or_relabelled() {
    let (env, admin) = provider().await;
    let _limits = LIMITS.read().await;
    let mut t = Tenant::generate(env, "rt-ns", false).await;
    t.claim(&admin).await;
    t.twin("rt-ns-app", "rt-ns-twin").await;
    let provider_ns = "rt-ns-provider";
    admin_namespace(&admin, provider_ns).await;
    let tenant_ns = t.name.clone();
    let watched = ["kube-system", provider_ns, "rt-ns-twin", tenant_ns.as_str()];
    let before = ns_states(&admin, &watched).await;

    let namespaces: Api<Namespace> = Api::all(t.peer.clone());
    let dp = DeleteParams::default();
    for name in watched {
        refused(
            namespaces.delete(name, &dp).await,
            RBAC,
            &rbac("delete", "namespaces"),
            &format!("delete namespace {name}"),
        );
    }
    let forged: Namespace = serde_json::from_value(json!({"metadata": {
        "name": "rt-ns-created",
        "labels": {harness::ORIGIN: "rt-ns", harness::DESTINATION: PROVIDER, wire::TENANT_LABEL: &tenant_ns},
    }}))
    .unwrap();
    refused(
        namespaces.create(&PostParams::default(), &forged).await,
        RBAC,
        &rbac("create", "namespaces"),
        "create a namespace labelled as one of its twins",
    );
    for name in ["rt-ns-twin", tenant_ns.as_str()] {
        for (key, value) in [
            ("pod-security.kubernetes.io/enforce", "privileged"),
            (wire::TENANT_NAMESPACE_LABEL, "true"),
        ] {
            refused(
                namespaces
                    .patch(
                        name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"metadata": {"labels": {key: value}}})),
                    )
                    .await,
                RBAC,
                &rbac("patch", "namespaces"),
                &format!("label namespace {name} {key}={value}"),
            );
            let mut current = Api::<Namespace>::all(admin.clone())
                .get(name)
                .await
                .unwrap();
            current.labels_mut().insert(key.into(), value.into());
            refused(
                namespaces
                    .replace(name, &PostParams::default(), &current)
                    .await,
                RBAC,
                &rbac("update", "namespaces"),
                &format!("update namespace {name} with {key}={value}"),
            );
        }
    }

    assert_eq!(
        ns_states(&admin, &watched).await,
        before,
        "a namespace changed under the refused writes"
    );
    assert!(
        ns_state(&admin, "rt-ns-created").await.is_none(),
        "namespace rt-ns-created exists"
    );
}

// ---- (2) the Lease and the NamespaceMap --------------------------------------------------------

#[tokio::test]
async fn lease_and_namespace_map_metadata_belong_to_the_provider() {
    let (env, admin) = provider().await;
    let mut t = Tenant::generate(env, "rt-lease", false).await;
    t.claim(&admin).await;
    let admin_leases = Api::<Lease>::namespaced(admin.clone(), &t.name);
    let admin_maps = Api::<NamespaceMap>::namespaced(admin.clone(), &t.name);
    let lease_before = admin_leases.get(LEASE_NAME).await.unwrap();
    let map_before = admin_maps.get(NAMESPACE_MAP_NAME).await.unwrap();

    let ghost_owner = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "rt-ghost-owner",
        "uid": "6f1c2a4e-0000-4000-8000-00000000dead"}]);
    let metadata = "belong to the provider";
    let spec = "a peering may change only the holder (once) and the renew time of its Lease";
    let leases = Api::<Lease>::namespaced(t.peer.clone(), &t.name);
    for (patch, expect, attack) in [
        (
            json!({"metadata": {"ownerReferences": ghost_owner}}),
            metadata,
            "point the Lease's ownerReferences at an owner that does not exist (the garbage collector would delete it)",
        ),
        (
            json!({"metadata": {"finalizers": ["example.com/keep-forever"]}}),
            metadata,
            "add a finalizer to the Lease",
        ),
        (
            json!({"metadata": {"labels": {"example.com/mine": "yes"}}}),
            metadata,
            "label the Lease",
        ),
        (
            json!({"metadata": {"labels": {wire::PEERING_LEASE_LABEL: null}}}),
            metadata,
            "remove the peering-lease label (the provider would stop looking at the Lease)",
        ),
        (
            json!({"spec": {"leaseDurationSeconds": 1_000_000}}),
            spec,
            "lengthen the Lease duration",
        ),
        (
            json!({"spec": {"leaseTransitions": 7}}),
            spec,
            "change the Lease's transitions",
        ),
        (
            json!({"spec": {"holderIdentity": "rt-lease-other"}}),
            "already claimed",
            "hand the Lease to another consumer id",
        ),
    ] {
        refused(
            leases
                .patch(LEASE_NAME, &PatchParams::default(), &Patch::Merge(patch))
                .await,
            POLICY,
            expect,
            attack,
        );
    }
    refused(
        leases.delete(LEASE_NAME, &DeleteParams::default()).await,
        RBAC,
        &rbac("delete", "leases"),
        "delete its Lease",
    );
    let maps = Api::<NamespaceMap>::namespaced(t.peer.clone(), &t.name);
    for (patch, attack) in [
        (
            json!({"metadata": {"ownerReferences": ghost_owner}}),
            "point the NamespaceMap's ownerReferences at an owner that does not exist",
        ),
        (
            json!({"metadata": {"finalizers": ["example.com/keep-forever"]}}),
            "add a finalizer to the NamespaceMap",
        ),
        (
            json!({"metadata": {"labels": {"example.com/mine": "yes"}}}),
            "label the NamespaceMap",
        ),
        (
            json!({"metadata": {"annotations": {"example.com/mine": "yes"}}}),
            "annotate the NamespaceMap",
        ),
    ] {
        refused(
            maps.patch(
                NAMESPACE_MAP_NAME,
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await,
            POLICY,
            metadata,
            attack,
        );
    }
    refused(
        maps.delete(NAMESPACE_MAP_NAME, &DeleteParams::default())
            .await,
        RBAC,
        &rbac("delete", "namespacemaps"),
        "delete its NamespaceMap",
    );

    // The garbage collector deletes a dependent whose owner does not exist within seconds; 10 s
    // of nothing (a fixed wait: we check that nothing happens).
    tokio::time::sleep(Duration::from_secs(10)).await;
    let lease = admin_leases
        .get_opt(LEASE_NAME)
        .await
        .unwrap()
        .expect("the Lease still exists 10 s later");
    assert_eq!(lease.uid(), lease_before.uid(), "the Lease was replaced");
    assert_eq!(lease.metadata.owner_references, None);
    assert_eq!(lease.metadata.finalizers, None);
    assert_eq!(lease.labels(), lease_before.labels());
    let spec = lease.spec.unwrap();
    assert_eq!(
        spec.lease_duration_seconds,
        Some(lease::LEASE_DURATION_SECONDS)
    );
    assert_eq!(spec.holder_identity.as_deref(), Some("rt-lease"));
    assert_eq!(
        spec.lease_transitions,
        lease_before.spec.unwrap().lease_transitions
    );
    let map = admin_maps
        .get_opt(NAMESPACE_MAP_NAME)
        .await
        .unwrap()
        .expect("the NamespaceMap still exists 10 s later");
    assert_eq!(map.uid(), map_before.uid(), "the NamespaceMap was replaced");
    assert_eq!(map.metadata.owner_references, None);
    assert_eq!(map.metadata.finalizers, None);
    assert_eq!(map.labels(), map_before.labels());
    assert_eq!(map.annotations(), map_before.annotations());
    assert!(
        ns_state(&admin, &t.name)
            .await
            .is_some_and(|s| !s.terminating),
        "the tenant namespace is gone"
    );
}

/// Slow (~100 s: the Lease duration is 90 s), so it takes no shared lock.
#[tokio::test]
async fn renew_time_in_2099_does_not_keep_a_peering_alive() {
    let (env, admin) = provider().await;
    let mut t = Tenant::generate(env, "rt-2099", false).await;
    t.claim(&admin).await;
    t.twin("rt-2099-app", "rt-2099-twin").await;
    let fcs = Api::<ForeignCluster>::all(admin.clone());
    eventually(
        "newyork to show rt-2099's incoming peering",
        WAIT,
        || async { fcs.get_opt("rt-2099").await.ok().flatten() },
    )
    .await;
    // The consumer's host goes away after writing a renew time in 2099 and never renews again.
    t.stop_renewing();
    let lease = Api::<Lease>::namespaced(t.peer.clone(), &t.name)
        .patch(
            LEASE_NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"renewTime": "2099-01-01T00:00:00.000000Z"}})),
        )
        .await
        .expect(
            "admission lets a consumer write any renew time: only the provider's clock judges it",
        );
    let written = Instant::now();
    let renew = lease.spec.unwrap().renew_time.unwrap().0;
    assert!(renew.to_string().starts_with("2099-"), "{renew}");

    // The provider counts a renewal from when it saw it: stale 90 s later, revoked after the 5 s
    // grace (it looks every 3 s).
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    eventually(
        "newyork to revoke rt-2099, which stopped renewing after writing renewTime 2099",
        Duration::from_secs(90 + 5 + 45),
        || async {
            namespaces
                .get_opt(&t.name)
                .await
                .ok()?
                .is_none_or(|n| n.metadata.deletion_timestamp.is_some())
                .then_some(())
        },
    )
    .await;
    let elapsed = written.elapsed();
    assert!(
        elapsed >= Duration::from_secs(85),
        "rt-2099 revoked {elapsed:?} after its last renewal: before its 90 s Lease ran out, so \
         not for staleness"
    );
    eprintln!("red team: rt-2099 revoked {elapsed:?} after its renewTime-2099 write");
    assert!(
        ns_state(&admin, "rt-2099-twin")
            .await
            .is_none_or(|s| s.terminating),
        "the revoked identity's twin namespace is still there"
    );
    eventually(
        "the revoked consumer's ForeignCluster to go",
        WAIT,
        || async { fcs.get_opt("rt-2099").await.ok()?.is_none().then_some(()) },
    )
    .await;
    match Api::<Lease>::namespaced(t.peer.clone(), &t.name)
        .get(LEASE_NAME)
        .await
    {
        Err(kube::Error::Api(s)) if s.code == 401 || s.code == 403 || s.code == 404 => {}
        other => panic!("the revoked token still reads its Lease: {other:?}"),
    }
}

// ---- (3) one consumer id, one peering ----------------------------------------------------------

#[tokio::test]
async fn a_claimed_consumer_id_cannot_be_claimed_again() {
    let (env, admin) = provider().await;
    let _limits = LIMITS.read().await;
    let mut owner = Tenant::generate(env, "rt-claim", false).await;
    owner.claim(&admin).await;
    owner.twin("rt-claim-app", "rt-claim-twin").await;
    let owner_ns = owner.name.clone();
    let before = ns_states(&admin, &["rt-claim-twin", owner_ns.as_str()]).await;

    let thief = Tenant::generate(env, "rt-claim-thief", false).await;
    refused(
        lease::renew_lease(&thief.peer, &thief.name, "rt-claim").await,
        POLICY,
        "consumer cluster id rt-claim is already peered with this cluster through another identity",
        "a second tenant claims the live consumer id rt-claim",
    );
    // An id bound at creation (--consumer) is refused before its tenant ever claimed it...
    let bound = Tenant::generate(env, "rt-claim-bound", true).await;
    refused(
        lease::renew_lease(&thief.peer, &thief.name, "rt-claim-bound").await,
        POLICY,
        "already peered with this cluster through another identity",
        "a second tenant claims an id bound by generate peer-command --consumer",
    );
    // ...and that tenant may claim nothing else (its tenant namespace is bound to the id; its
    // Lease stays unclaimed until that consumer renews it).
    refused(
        lease::renew_lease(&bound.peer, &bound.name, "rt-claim-elsewhere").await,
        POLICY,
        "this peering identity is bound to consumer cluster rt-claim-bound",
        "the tenant of --consumer rt-claim-bound claims another id",
    );
    let thief_lease = Api::<Lease>::namespaced(admin.clone(), &thief.name)
        .get(LEASE_NAME)
        .await
        .unwrap();
    assert_eq!(
        thief_lease
            .spec
            .and_then(|s| s.holder_identity)
            .unwrap_or_default(),
        "",
        "the refused claims left a holder"
    );

    // The provider looks every 3 s: a host fooled into seeing a contested id would revoke the
    // owner now (a fixed wait: we check that nothing happens).
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        ns_states(&admin, &["rt-claim-twin", owner_ns.as_str()]).await,
        before,
        "the owner's tenant or twin namespace changed"
    );
    // The identity made for rt-claim-bound waits for its consumer, who can use it.
    assert!(
        ns_state(&admin, &bound.name)
            .await
            .is_some_and(|s| !s.terminating),
        "newyork revoked the identity made by generate peer-command --consumer rt-claim-bound \
         before its consumer could use it (tenant namespace {})",
        bound.name
    );
    lease::renew_lease(&bound.peer, &bound.name, "rt-claim-bound")
        .await
        .expect("the consumer named by --consumer claims its identity");
    let map = Api::<NamespaceMap>::namespaced(admin.clone(), &owner_ns)
        .get(NAMESPACE_MAP_NAME)
        .await
        .unwrap();
    assert_eq!(
        map.status.unwrap().current_mapping["rt-claim-app"].phase,
        MappingPhase::Accepted
    );

    // The provider's admin cannot make a second identity for the id either.
    let out = liqoctl(
        env,
        &[
            "generate",
            "peer-command",
            "--only-command",
            "--consumer",
            "rt-claim",
        ],
    )
    .await;
    assert!(
        !out.status.success(),
        "generate --consumer rt-claim succeeded: {}",
        text(&out)
    );
    let said = text(&out);
    assert!(
        said.contains("consumer rt-claim already has a peering identity here")
            && said.contains(&owner_ns),
        "{said}"
    );
    assert_eq!(
        namespaces_labelled(&admin, &format!("{}=rt-claim", wire::CONSUMER_ID_LABEL)).await,
        [owner_ns.as_str()],
        "another tenant namespace is bound to rt-claim"
    );
}

// ---- (4) a namespace admin forges a peering ---------------------------------------------------

#[tokio::test]
async fn a_namespace_admin_cannot_forge_a_peering() {
    let (env, admin) = provider().await;
    let _limits = LIMITS.read().await;
    let mut victim = Tenant::generate(env, "rt-forge-victim", false).await;
    victim.claim(&admin).await;
    victim.twin("rt-forge-app", "rt-forge-victim-twin").await;
    let fcs = Api::<ForeignCluster>::all(admin.clone());
    let victim_fc = eventually(
        "newyork to show rt-forge-victim's incoming peering",
        WAIT,
        || async { fcs.get_opt("rt-forge-victim").await.ok().flatten() },
    )
    .await;

    // As cluster admin: a namespace with no tenant label, and mallory, its admin.
    let forge = "rt-forge";
    admin_namespace(&admin, forge).await;
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "mallory"}})).unwrap();
    Api::<ServiceAccount>::namespaced(admin.clone(), forge)
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "mallory-admin"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "mallory", "namespace": forge}],
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(admin.clone(), forge)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let mallory_token = sa_token(&admin, forge, "mallory").await.unwrap();
    let mallory = token_client(&victim.args.url, &victim.args.ca, &mallory_token).await;

    // Mallory forges the identity: the ServiceAccount, the Lease and the NamespaceMap of a
    // tenant, claiming the victim's id with a long stale renewal.
    let pp = PostParams::default();
    let forged_sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": wire::CONSUMER_SERVICE_ACCOUNT}}))
            .unwrap();
    Api::<ServiceAccount>::namespaced(mallory.clone(), forge)
        .create(&pp, &forged_sa)
        .await
        .expect("the admin role creates ServiceAccounts");
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": LEASE_NAME, "labels": {wire::PEERING_LEASE_LABEL: "true",
                                                    wire::PROVIDER_ID_LABEL: PROVIDER}},
        "spec": {"holderIdentity": "rt-forge-victim", "leaseDurationSeconds": 90,
                 "renewTime": "2020-01-01T00:00:00.000000Z"},
    }))
    .unwrap();
    // The `admin` ClusterRole grants Leases but not liqo's NamespaceMaps (a CRD nothing
    // aggregates into it): whichever mallory cannot create, the cluster admin creates for her
    // (the test prints who did). The point is what the HOST does with objects in a namespace
    // that is not a tenant's, whoever wrote them.
    let created_by = |r: kube::Result<()>, what: &str| match r {
        Ok(_) => "mallory".to_string(),
        Err(kube::Error::Api(s)) if s.code == 403 => {
            format!("the cluster admin ({what}: {})", s.message)
        }
        Err(e) => panic!("forging the {what}: {e}"),
    };
    let by = created_by(
        Api::<Lease>::namespaced(mallory.clone(), forge)
            .create(&pp, &lease)
            .await
            .map(drop),
        "Lease",
    );
    if by != "mallory" {
        Api::<Lease>::namespaced(admin.clone(), forge)
            .create(&pp, &lease)
            .await
            .unwrap();
    }
    eprintln!("red team: the forged Lease was created by {by}");
    let map: NamespaceMap = serde_json::from_value(json!({
        "apiVersion": "virtualkubelet.liqo.io/v1beta1", "kind": "NamespaceMap",
        "metadata": {"name": NAMESPACE_MAP_NAME},
        "spec": {"desiredMapping": {"app": "rt-forge-twin"}},
    }))
    .unwrap();
    let by = created_by(
        Api::<NamespaceMap>::namespaced(mallory.clone(), forge)
            .create(&pp, &map)
            .await
            .map(drop),
        "NamespaceMap",
    );
    if by != "mallory" {
        Api::<NamespaceMap>::namespaced(admin.clone(), forge)
            .create(&pp, &map)
            .await
            .unwrap();
    }
    eprintln!("red team: the forged NamespaceMap was created by {by}");

    // The host answers a NamespaceMap change at once: the victim's answer to a request made
    // after the forgery shows it has looked since. Then longer than the grace and two provider
    // passes, for a host that trusted the stale forged Lease to revoke the victim's id (a fixed
    // wait: we check that nothing happens).
    victim
        .twin("rt-forge-app-2", "rt-forge-victim-twin-2")
        .await;
    let watched = [
        "rt-forge-victim-twin",
        "rt-forge-victim-twin-2",
        victim.name.as_str(),
        forge,
    ];
    let before = ns_states(&admin, &watched).await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert!(
        ns_state(&admin, "rt-forge-twin").await.is_none(),
        "newyork made the twin namespace the forged NamespaceMap asked for"
    );
    assert_eq!(
        namespaces_labelled(&admin, &format!("{}={forge}", wire::TENANT_LABEL)).await,
        Vec::<String>::new(),
        "newyork made a twin namespace for the forged tenant"
    );
    let forged_map = Api::<NamespaceMap>::namespaced(admin.clone(), forge)
        .get(NAMESPACE_MAP_NAME)
        .await
        .unwrap();
    assert!(
        forged_map
            .status
            .is_none_or(|s| s.current_mapping.is_empty()),
        "newyork answered the forged NamespaceMap"
    );

    // The forged identity's own token can do nothing in the victim's twin.
    let forged_token = match sa_token(&mallory, forge, wire::CONSUMER_SERVICE_ACCOUNT).await {
        Ok(token) => token,
        // The `admin` role may not grant serviceaccounts/token: the cluster admin asks.
        Err(kube::Error::Api(s)) if s.code == 403 => {
            sa_token(&admin, forge, wire::CONSUMER_SERVICE_ACCOUNT)
                .await
                .unwrap()
        }
        Err(e) => panic!("a token of the forged identity: {e}"),
    };
    let forged = token_client(&victim.args.url, &victim.args.ca, &forged_token).await;
    let in_twin = Api::<Service>::namespaced(forged.clone(), "rt-forge-victim-twin");
    refused(
        in_twin
            .create(
                &pp,
                &service("forged", owned_labels("rt-forge-victim"), json!({})),
            )
            .await,
        RBAC,
        &rbac("create", "services"),
        "the forged identity writes a Service in the victim's twin",
    );
    refused(
        in_twin.list(&ListParams::default()).await,
        RBAC,
        &rbac("list", "services"),
        "the forged identity lists the victim's Services",
    );
    for (kind, result) in [
        (
            "Lease",
            lease::renew_lease(&forged, &victim.name, "rt-forge-victim")
                .await
                .map(drop),
        ),
        (
            "NamespaceMap",
            twin_requests::request_twin(&forged, &victim.name, "x", "rt-forge-stolen")
                .await
                .map(drop),
        ),
    ] {
        refused(
            result,
            RBAC,
            "cannot",
            &format!("the forged identity writes the victim's {kind}"),
        );
    }

    // The forged Lease goes away: still nothing happens to the victim.
    Api::<Lease>::namespaced(admin.clone(), forge)
        .delete(LEASE_NAME, &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(
        ns_states(&admin, &watched).await,
        before,
        "the victim's namespaces (or rt-forge) changed after the forged Lease went stale and away"
    );
    let fc = fcs
        .get_opt("rt-forge-victim")
        .await
        .unwrap()
        .expect("the victim's ForeignCluster was deleted");
    assert_eq!(
        fc.uid(),
        victim_fc.uid(),
        "the victim's ForeignCluster was replaced"
    );
    assert!(
        Api::<ServiceAccount>::namespaced(admin.clone(), forge)
            .get_opt(wire::CONSUMER_SERVICE_ACCOUNT)
            .await
            .unwrap()
            .is_some(),
        "newyork revoked (deleted) the forged ServiceAccount: it trusted rt-forge"
    );
    lease::renew_lease(&victim.peer, &victim.name, "rt-forge-victim")
        .await
        .expect("the victim still renews its Lease");
}

// ---- (5) content rules in its own twin ---------------------------------------------------------

#[tokio::test]
async fn content_rules_hold_in_its_own_twin() {
    let (env, admin) = provider().await;
    let _limits = LIMITS.read().await;
    let mut t = Tenant::generate(env, "rt-content", false).await;
    t.claim(&admin).await;
    let twin = "rt-content-twin";
    t.twin("rt-content-app", twin).await;
    let labels = owned_labels("rt-content");
    let pp = PostParams::default();
    let services = Api::<Service>::namespaced(t.peer.clone(), twin);
    let slices = Api::<EndpointSlice>::namespaced(t.peer.clone(), twin);

    refused(
        services
            .create(
                &pp,
                &service(
                    "external-ips",
                    labels.clone(),
                    json!({"externalIPs": ["203.0.113.10"]}),
                ),
            )
            .await,
        POLICY,
        "a peering may not set spec.externalIPs on a Service",
        "a Service with spec.externalIPs (CVE-2020-8554)",
    );
    refused(
        services
            .create(
                &pp,
                &service("balancer", labels.clone(), json!({"type": "LoadBalancer"})),
            )
            .await,
        POLICY,
        "this cluster lets peers write Services of type ClusterIP, NodePort, ExternalName only, not LoadBalancer",
        "a Service of type LoadBalancer",
    );

    // testenv's API servers advertise 127.0.0.1, which Endpoints cannot hold: then the
    // `kubernetes` Service has no endpoint, and the API server is reached on loopback.
    let api_server = api_server_addresses(&admin)
        .await
        .first()
        .copied()
        .unwrap_or_else(|| "127.0.0.1".parse().unwrap());
    let cidrs = service_cidrs(&admin).await;
    let service_range = cidrs.first().expect("newyork has a ServiceCIDR");
    let in_services = address_in(service_range);
    eprintln!("red team: newyork's API server at {api_server}, Service range {cidrs:?}");
    // Each refusal names the range the address is in: Kubernetes' own validation already
    // refuses loopback and link-local endpoints (422, before any policy); the policy refuses
    // the rest (its message lists the denied ranges).
    let api_server_range = if api_server.is_loopback() {
        "127.0.0.0/8".to_string()
    } else {
        format!(
            "{api_server}/{}",
            if api_server.is_ipv4() { 32 } else { 128 }
        )
    };
    for (address, range, what) in [
        ("127.0.0.1".parse().unwrap(), "127.0.0.0/8", "loopback"),
        (
            "169.254.169.254".parse().unwrap(),
            "169.254.0.0/16",
            "the cloud metadata service",
        ),
        (
            api_server,
            api_server_range.as_str(),
            "newyork's API server",
        ),
        (
            in_services,
            service_range.as_str(),
            "newyork's Service range",
        ),
    ] {
        refused(
            slices
                .create(
                    &pp,
                    &slice(
                        "bad",
                        labels.clone(),
                        address_type(address),
                        &address.to_string(),
                    ),
                )
                .await,
            POLICY,
            range,
            &format!("an EndpointSlice at {address} ({what}, {range})"),
        );
    }
    refused(
        slices
            .create(
                &pp,
                &slice("fqdn", labels.clone(), "FQDN", "metadata.example.com"),
            )
            .await,
        POLICY,
        "FQDN slices are never allowed",
        "an FQDN EndpointSlice (CVE-2021-25740)",
    );

    // What reflection needs is still allowed.
    services
        .create(
            &pp,
            &service("allowed", labels.clone(), json!({"type": "ClusterIP"})),
        )
        .await
        .expect("a ClusterIP Service with the right labels");
    slices
        .create(&pp, &slice("allowed", labels.clone(), "IPv4", "10.200.0.5"))
        .await
        .expect("an EndpointSlice at a pod address (10.200.0.5)");

    let service_names: Vec<String> = Api::<Service>::namespaced(admin.clone(), twin)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    let slice_names: Vec<String> = Api::<EndpointSlice>::namespaced(admin.clone(), twin)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(service_names, ["allowed"], "Services in {twin}");
    assert_eq!(slice_names, ["allowed"], "EndpointSlices in {twin}");
}

/// EndpointSlices point only inside the ranges the peering declared on its Lease (london's pod
/// range here, as `liqoctl peer` and the consumer's host declare it), never at a declared range
/// that overlaps the provider's own; the declaration follows a CidrRemap change at once, the
/// provider records what it accepted and refused where the peer cannot write, and an oversized
/// declaration is refused.
#[tokio::test]
async fn endpoints_point_only_where_the_peering_declared() {
    use liqo_host::api::wire::ENDPOINT_RANGES_ANNOTATION;
    use liqo_host::api::wire::{
        DECLARED_RANGES_ANNOTATION, RECORDED_RANGES_ANNOTATION, REFUSED_RANGES_ANNOTATION,
    };
    use liqo_host::protocol::endpoint_ranges::lease_annotation;
    let (env, admin) = provider().await;
    let _limits = LIMITS.read().await;
    let mut t = Tenant::generate(env, "rt-ranges", false).await;
    t.claim(&admin).await;
    let twin = "rt-ranges-twin";
    t.twin("rt-ranges-app", twin).await;
    let labels = owned_labels("rt-ranges");
    let pp = PostParams::default();
    let slices = Api::<EndpointSlice>::namespaced(t.peer.clone(), twin);
    let namespaces = Api::<Namespace>::all(admin.clone());

    slices
        .create(
            &pp,
            &slice("declared", labels.clone(), "IPv4", "10.200.3.4"),
        )
        .await
        .expect("an EndpointSlice inside the declared range 10.200.0.0/16");
    // Addresses the provider does not own, but the peering never declared.
    for address in ["192.0.2.44", "10.70.0.5"] {
        refused(
            slices
                .create(&pp, &slice("undeclared", labels.clone(), "IPv4", address))
                .await,
            POLICY,
            "a peering may point EndpointSlices only at 10.200.0.0/16,",
            &format!("an EndpointSlice at {address}, outside the declared ranges"),
        );
    }

    // The consumer moves to CidrRemap (its endpoints now seen as 10.70.0.0/16) and also
    // declares ranges of newyork's own: its pod range, its Service range, loopback.
    let own_pods: Vec<String> = Api::<k8s_openapi::api::core::v1::Node>::all(admin.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.spec?.pod_cidrs)
        .flatten()
        .collect();
    let own_pods = own_pods
        .first()
        .expect("newyork's node has a pod range")
        .clone();
    let service_range = service_cidrs(&admin)
        .await
        .first()
        .expect("newyork has a ServiceCIDR")
        .clone();
    let declaration = format!("10.70.0.0/16,{own_pods},{service_range},127.0.0.0/8");
    lease::renew_lease_announcing(
        &t.peer,
        &t.name,
        &t.id,
        lease_annotation(Some(&declaration)),
    )
    .await
    .expect("the consumer changes its declaration");
    let record = eventually("newyork to record the new declaration", WAIT, || async {
        let ns = namespaces.get(&t.name).await.ok()?;
        let a = ns.annotations();
        (a.get(RECORDED_RANGES_ANNOTATION).map(String::as_str) == Some("10.70.0.0/16")).then(|| {
            a.get(REFUSED_RANGES_ANNOTATION)
                .cloned()
                .unwrap_or_default()
        })
    })
    .await;
    eprintln!("red team: refused declaration recorded: {record}");
    for range in [&own_pods, &service_range, &"127.0.0.0/8".to_string()] {
        assert!(
            record.contains(&format!("{range}: overlaps")),
            "the refusal of {range} is not recorded: {record}"
        );
    }
    eventually("the twin to follow the declaration", WAIT, || async {
        let ns = namespaces.get(twin).await.ok()?;
        (ns.annotations()
            .get(ENDPOINT_RANGES_ANNOTATION)
            .map(String::as_str)
            == Some("10.70.0.0/16"))
        .then_some(())
    })
    .await;
    slices
        .create(&pp, &slice("remapped", labels.clone(), "IPv4", "10.70.0.5"))
        .await
        .expect("an EndpointSlice inside the new declared range 10.70.0.0/16");
    for (address, what) in [
        ("10.200.3.5".to_string(), "no longer declared"),
        (
            address_in(&own_pods).to_string(),
            "newyork's pod range, declared",
        ),
    ] {
        refused(
            slices
                .create(&pp, &slice("stale", labels.clone(), "IPv4", &address))
                .await,
            POLICY,
            "a peering may point EndpointSlices only at 10.70.0.0/16,",
            &format!("an EndpointSlice at {address} ({what})"),
        );
    }

    // The record is the provider's: the peer cannot write it, nor declare without bound.
    refused(
        namespaces_as(&t)
            .patch(
                &t.name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {
                    RECORDED_RANGES_ANNOTATION: "0.0.0.0/0"}}})),
            )
            .await,
        RBAC,
        &rbac("patch", "namespaces"),
        "the peer rewrites the provider's record of its ranges",
    );
    refused(
        lease::renew_lease_announcing(
            &t.peer,
            &t.name,
            &t.id,
            lease_annotation(Some(&"10.70.0.0/16,".repeat(80))),
        )
        .await,
        POLICY,
        "liqo.io/declared-endpoint-ranges, of at most 1024",
        "a declaration of 1120 characters",
    );
    let lease = Api::<Lease>::namespaced(admin.clone(), &t.name)
        .get(LEASE_NAME)
        .await
        .unwrap();
    assert_eq!(
        lease.annotations().get(DECLARED_RANGES_ANNOTATION),
        Some(&declaration),
        "the refused declaration changed the Lease"
    );
    let ns = namespaces.get(&t.name).await.unwrap();
    assert_eq!(
        ns.annotations()
            .get(RECORDED_RANGES_ANNOTATION)
            .map(String::as_str),
        Some("10.70.0.0/16"),
        "the refused writes changed the record"
    );

    // The provider's admin sees both.
    let out = liqoctl(env, &["info"]).await;
    assert!(out.status.success(), "liqoctl info: {}", text(&out));
    let info = String::from_utf8_lossy(&out.stdout);
    assert!(
        info.contains("endpoint ranges: 10.70.0.0/16")
            && info.contains(&format!("refused endpoint range: {own_pods}: overlaps")),
        "liqoctl info does not show rt-ranges' endpoint ranges:\n{info}"
    );

    let names: Vec<String> = Api::<EndpointSlice>::namespaced(admin.clone(), twin)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(names, ["declared", "remapped"], "EndpointSlices in {twin}");
}

/// The namespaces API with the tenant's token.
fn namespaces_as(t: &Tenant) -> Api<Namespace> {
    Api::all(t.peer.clone())
}

// ---- (6) reserved and taken twin names ---------------------------------------------------------

#[tokio::test]
async fn reserved_and_taken_names_are_never_twins() {
    let (env, admin) = provider().await;
    let _limits = LIMITS.read().await;
    let mut other = Tenant::generate(env, "rt-names-other", false).await;
    other.claim(&admin).await;
    other.twin("app", "rt-names-other-twin").await;
    let mut t = Tenant::generate(env, "rt-names", false).await;
    t.claim(&admin).await;
    admin_namespace(&admin, "rt-names-admin").await;
    let own_tenant = t.name.clone();
    let other_tenant = other.name.clone();
    let cases = [
        ("l-kube-system", "kube-system", reasons::RESERVED),
        ("l-default", "default", reasons::RESERVED),
        ("l-liqo", "liqo", reasons::RESERVED),
        ("l-tenant", "liqo-tenant-xyz", reasons::RESERVED),
        ("l-own-tenant", own_tenant.as_str(), reasons::RESERVED),
        ("l-other-tenant", other_tenant.as_str(), reasons::RESERVED),
        ("l-admin", "rt-names-admin", reasons::CONFLICT),
        ("l-other-twin", "rt-names-other-twin", reasons::CONFLICT),
    ];
    let existing: Vec<&str> = cases
        .iter()
        .map(|c| c.1)
        .filter(|n| *n != "liqo-tenant-xyz")
        .collect();
    let before = ns_states(&admin, &existing).await;
    let other_binding = Api::<RoleBinding>::namespaced(admin.clone(), "rt-names-other-twin")
        .get("liqo-peering")
        .await
        .unwrap();

    for (local, remote, reason) in cases {
        let answer = t.ask(local, remote).await;
        assert_eq!(
            (answer.phase, answer.reason.as_str()),
            (MappingPhase::CreationLoopBackOff, reason),
            "asking for {remote} as a twin: {answer:?}"
        );
        assert!(answer.message.contains(remote), "{answer:?}");
    }
    // Nor can it report them accepted itself.
    refused(
        Api::<NamespaceMap>::namespaced(t.peer.clone(), &t.name)
            .patch_status(
                NAMESPACE_MAP_NAME,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"currentMapping": {"l-kube-system":
                    {"remoteNamespace": "kube-system", "phase": "Accepted"}}}})),
            )
            .await,
        RBAC,
        &rbac("patch", "namespacemaps/status"),
        "report kube-system as its Accepted twin",
    );

    assert_eq!(
        ns_states(&admin, &existing).await,
        before,
        "a namespace asked for as a twin changed"
    );
    assert!(ns_state(&admin, "liqo-tenant-xyz").await.is_none());
    assert_eq!(
        namespaces_labelled(&admin, &format!("{}={own_tenant}", wire::TENANT_LABEL)).await,
        Vec::<String>::new(),
        "newyork made a twin namespace for rt-names"
    );
    for ns in [
        "kube-system",
        "default",
        "liqo",
        "rt-names-admin",
        own_tenant.as_str(),
        other_tenant.as_str(),
    ] {
        assert!(
            Api::<RoleBinding>::namespaced(admin.clone(), ns)
                .get_opt("liqo-peering")
                .await
                .unwrap()
                .is_none(),
            "newyork bound the peering in {ns}"
        );
        assert!(
            Api::<ResourceQuota>::namespaced(admin.clone(), ns)
                .get_opt("liqo-peering")
                .await
                .unwrap()
                .is_none(),
            "newyork put a peering quota in {ns}"
        );
        refused(
            Api::<Service>::namespaced(t.peer.clone(), ns)
                .create(
                    &PostParams::default(),
                    &service("x", owned_labels("rt-names"), json!({})),
                )
                .await,
            RBAC,
            &rbac("create", "services"),
            &format!("write a Service in {ns}"),
        );
    }
    let binding = Api::<RoleBinding>::namespaced(admin.clone(), "rt-names-other-twin")
        .get("liqo-peering")
        .await
        .unwrap();
    assert_eq!(binding.subjects, other_binding.subjects);
    assert_eq!(binding.role_ref, other_binding.role_ref);
}

// ---- (7) the namespace cap and the quota -----------------------------------------------------

#[tokio::test]
async fn namespace_cap_and_quota_bound_a_peer() {
    let (env, admin) = provider().await;
    let _limits = LIMITS.write().await;
    let _restore = LimitsGuard::set(
        env,
        &admin,
        json!({"maxNamespacesPerPeer": "2", "quota": "count/services=2"}),
    )
    .await;
    let mut t = Tenant::generate(env, "rt-quota", false).await;
    t.claim(&admin).await;
    t.twin("a", "rt-quota-a").await;
    t.twin("b", "rt-quota-b").await;
    let third = t.ask("c", "rt-quota-c").await;
    assert_eq!(
        (third.phase, third.reason.as_str()),
        (MappingPhase::CreationLoopBackOff, reasons::LIMIT),
        "a third twin namespace over maxNamespacesPerPeer 2: {third:?}"
    );
    assert!(
        third.message.contains("maxNamespacesPerPeer 2"),
        "{third:?}"
    );
    assert!(ns_state(&admin, "rt-quota-c").await.is_none());

    // The quota admission refuses everything until the quota controller has filled in the
    // quota's status.
    let quotas = Api::<ResourceQuota>::namespaced(admin.clone(), "rt-quota-a");
    eventually("the quota of rt-quota-a to be in force", WAIT, || async {
        let quota = quotas.get_opt("liqo-peering").await.ok()??;
        let hard = quota.status?.hard?;
        (hard.get("count/services").map(|q| q.0.as_str()) == Some("2")).then_some(())
    })
    .await;
    let services = Api::<Service>::namespaced(t.peer.clone(), "rt-quota-a");
    let pp = PostParams::default();
    for name in ["s1", "s2"] {
        services
            .create(&pp, &service(name, owned_labels("rt-quota"), json!({})))
            .await
            .unwrap_or_else(|e| panic!("Service {name} within the quota: {e}"));
    }
    refused(
        services
            .create(&pp, &service("s3", owned_labels("rt-quota"), json!({})))
            .await,
        &[403],
        "exceeded quota",
        "a third Service over count/services=2",
    );
    let names: Vec<String> = Api::<Service>::namespaced(admin.clone(), "rt-quota-a")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(names, ["s1", "s2"]);
}

// ---- (8) generative --------------------------------------------------------------------------

#[tokio::test]
async fn random_writes_stay_in_scope() {
    let (env, admin) = provider().await;
    let _limits = LIMITS.read().await;
    generative::run(env, &admin).await;
}

// ---- revocation leaves nothing behind ---------------------------------------------------------

/// A finalizer the peer put on its own reflected objects must not outlive its identity: a twin
/// namespace stuck terminating keeps those Services and EndpointSlices, which this cluster's
/// proxies keep routing to the consumer's addresses after the peering is revoked.
#[tokio::test]
async fn revocation_leaves_no_twin_behind_even_with_finalizers() {
    let (env, admin) = provider().await;
    let _limits = LIMITS.read().await;
    let mut t = Tenant::generate(env, "rt-final", false).await;
    t.claim(&admin).await;
    let twin = "rt-final-twin";
    t.twin("rt-final-app", twin).await;
    let pp = PostParams::default();
    let mut stuck = service(
        "stuck",
        owned_labels("rt-final"),
        json!({"type": "NodePort"}),
    );
    stuck.metadata.finalizers = Some(vec!["example.com/never".into()]);
    let mut stuck_slice = slice("stuck", owned_labels("rt-final"), "IPv4", "10.200.0.77");
    stuck_slice.metadata.finalizers = Some(vec!["example.com/never".into()]);
    // Whether these are refused (a policy) or allowed and cleaned up at revocation, the
    // outcome below is what counts.
    let service_written = Api::<Service>::namespaced(t.peer.clone(), twin)
        .create(&pp, &stuck)
        .await;
    let slice_written = Api::<EndpointSlice>::namespaced(t.peer.clone(), twin)
        .create(&pp, &stuck_slice)
        .await;
    eprintln!(
        "red team: a finalizer on its Service: {}; on its EndpointSlice: {}",
        service_written
            .as_ref()
            .map_or_else(|e| format!("refused ({e})"), |_| "allowed".into()),
        slice_written
            .as_ref()
            .map_or_else(|e| format!("refused ({e})"), |_| "allowed".into()),
    );
    // The consumer unpeers: the provider revokes the identity at once.
    t.stop_renewing();
    lease::release_lease(&t.peer, &t.name).await.unwrap();
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    eventually("newyork to revoke rt-final (released)", WAIT, || async {
        namespaces
            .get_opt(&t.name)
            .await
            .ok()?
            .is_none_or(|n| n.metadata.deletion_timestamp.is_some())
            .then_some(())
    })
    .await;
    let deadline = Instant::now() + WAIT;
    while namespaces.get_opt(twin).await.unwrap().is_some() {
        if Instant::now() >= deadline {
            let left: Vec<String> = Api::<Service>::namespaced(admin.clone(), twin)
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .iter()
                .map(|s| format!("Service {} (finalizers {:?})", s.name_any(), s.finalizers()))
                .collect();
            panic!(
                "twin namespace {twin} of the revoked rt-final is still there (terminating) \
                 {WAIT:?} after the revocation, holding {left:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

// ---- (3b) the provider's own id ---------------------------------------------------------------

/// `liqoctl peer` refuses to peer a cluster with its own id; the provider must not let a peer
/// claim the provider's id either (it would show itself as its own consumer, with twin
/// namespaces labelled origin=newyork, destination=newyork).
#[tokio::test]
async fn a_peer_cannot_claim_the_providers_own_id() {
    let (env, admin) = provider().await;
    let t = Tenant::generate(env, "rt-self", false).await;
    match lease::renew_lease(&t.peer, &t.name, PROVIDER).await {
        Ok(_) => {
            // Evidence of what the provider made of it, then unpeer so that the other tests
            // run on a sane provider.
            tokio::time::sleep(Duration::from_secs(7)).await;
            let fc = Api::<ForeignCluster>::all(admin.clone())
                .get_opt(PROVIDER)
                .await
                .unwrap();
            let bound = ns_state(&admin, &t.name)
                .await
                .and_then(|s| s.labels.get(wire::CONSUMER_ID_LABEL).cloned());
            lease::release_lease(&t.peer, &t.name).await.unwrap();
            panic!(
                "attack allowed: a peer claimed the provider's own id {PROVIDER}; 7 s later the \
                 tenant is bound to {bound:?} and newyork has ForeignCluster {PROVIDER}: {:?}",
                fc.map(|f| (f.spec, f.metadata.labels))
            );
        }
        result => refused(
            result,
            POLICY,
            PROVIDER,
            "claim the provider's own cluster id (newyork)",
        ),
    }
}
