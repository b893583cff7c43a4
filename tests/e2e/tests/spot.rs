//! EC2's warnings and warm pools end to end, under HTTP load: the emulator's Auto
//! Scaling, EC2 (Spot interruptions, rebalance recommendations, warm pools), Run Command
//! and EventBridge; two real HAProxy hosts with their agent service; real backends; the
//! reactor with one invocation at a time (see `common`).
//!
//! - A Spot interruption warning on a member with a request in flight: the member gets
//!   no new request once the reactor has handled the warning, the request in flight
//!   completes (it fits the drain deadline), neither the schedule nor the replacement's
//!   events bring the member back, its terminate action is continued, and its
//!   termination costs no request.
//! - A rebalance recommendation drains the member with `REBALANCE=drain` and changes
//!   nothing with the default `ignore`.
//! - `haproxy:interrupted` put by anyone but the reactor on EC2's word (here a group tag
//!   every launch carries, on On-Demand instances) drains nothing and abandons no launch.
//! - A warm pool: an instance launched into the pool never reaches HAProxy; scale-out
//!   from the pool joins health-gated and is continued; scale-in with reuse drains and
//!   releases the member before it goes back to the pool; the schedule never adds a
//!   pool instance.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::util::lifecycle::*;
use harness::{http, Host, Load};

/// HAProxy's status (`UP`, `DRAIN`, `MAINT`...) of the server at `ip` on `host`, if a
/// slot holds that address.
fn status_of(host: &Host, ip: &str) -> Option<String> {
    host.client()
        .stats()
        .ok()?
        .into_iter()
        .find(|r| r.addr.rsplit_once(':').map(|(a, _)| a) == Some(ip))
        .map(|r| r.status)
}

/// Whether `ip` takes no new traffic on `host` (draining, in maintenance, or gone).
fn out_of_rotation(host: &Host, ip: &str) -> bool {
    status_of(host, ip).is_none_or(|s| s.starts_with("DRAIN") || s.starts_with("MAINT"))
}

/// Requests the backend on `ip` served (its own count).
fn served(ip: &str, port: u16) -> u64 {
    http::get(
        format!("{ip}:{port}").parse().expect("address"),
        "/__stats",
        Duration::from_secs(2),
    )
    .ok()
    .and_then(|r| serde_json::from_str::<serde_json::Value>(r.body.trim()).ok())
    .and_then(|v| v["requests"].as_u64())
    .unwrap_or(0)
}

/// Waits (bounded) until `f` holds.
async fn until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let every = Duration::from_millis(20);
    harness::wait_for_async(within, every, || std::future::ready(f().then_some(())))
        .await
        .unwrap_or_else(|| panic!("{what}: not within {within:?}"));
}

/// Load on every host's frontend, flowing.
async fn load(s: &Stack) -> Vec<Load> {
    let loads: Vec<Load> = s
        .hosts
        .iter()
        .map(|h| Load::start(h.frontend("web"), 2, Duration::from_secs(120), 1_000_000))
        .collect();
    until("load flowing", Duration::from_secs(10), || {
        loads.iter().all(|l| l.completed() > 50)
    })
    .await;
    loads
}

fn no_failures(loads: Vec<Load>) {
    for l in loads {
        let stats = l.stop();
        assert_eq!(stats.failed, 0, "failed requests: {:?}", stats.errors);
        assert!(stats.requests > 100, "{stats:?}");
    }
}

/// The warm pool's instances once `f` holds for them (bounded).
async fn pool_until(
    s: &Stack,
    what: &str,
    f: impl Fn(&[harness::world::GroupInstance]) -> bool,
) -> Vec<harness::world::GroupInstance> {
    let last = std::cell::RefCell::new(Vec::new());
    let every = Duration::from_millis(100);
    let found = harness::wait_for_async(Duration::from_secs(20), every, || async {
        let pool = s.w.warm_instances(GROUP).await.expect("warm pool");
        let done = f(&pool);
        *last.borrow_mut() = pool.clone();
        done.then_some(pool)
    })
    .await;
    found.unwrap_or_else(|| {
        panic!(
            "{what}: not within 20 s: {:?}; handled: {:#?}",
            last.borrow(),
            s.handled()
                .iter()
                .map(|h| (
                    h.summary.inputs.clone(),
                    h.summary.ignored.clone(),
                    h.summary.actions.clone()
                ))
                .collect::<Vec<_>>()
        )
    })
}

/// The number of events of `kind` handled so far.
fn handled_count(s: &Stack, kind: &str) -> usize {
    s.handled().iter().filter(|h| h.is(kind)).count()
}

/// Sends the schedule and waits until it was handled and every host accepted its
/// change (Run Command ended the commands that carried it).
async fn schedule(s: &Stack) {
    let reconciles = handled_count(s, "reconcile");
    s.schedule();
    until("the schedule ran", Duration::from_secs(10), || {
        handled_count(s, "reconcile") > reconciles
    })
    .await;
    let commands: Vec<String> = s
        .handled()
        .iter()
        .rfind(|h| h.is("reconcile"))
        .map(|h| {
            h.summary
                .changes
                .iter()
                .flat_map(|c| c.commands.clone())
                .collect()
        })
        .unwrap_or_default();
    s.commands_ended(&commands, Duration::from_secs(15)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_spot_warning_drains_the_member_before_it_is_reclaimed_and_nothing_brings_it_back() {
    let mut spec = StackSpec::new(300, 30);
    spec.env.push(("SPOT_DRAIN_TIMEOUT_S", "20".into()));
    let s = Stack::start(spec).await;
    let ids = s.launched(2).await;
    let (victim, other) = (ids[0].clone(), ids[1].clone());
    let victim_ip = s.w.private_ip(&victim).await.expect("address");
    let other_ip = s.w.private_ip(&other).await.expect("address");
    let loads = load(&s).await;
    // A 4 s request on the victim through every host, in flight at the warning.
    let requests = s.long_requests_to(&victim_ip, 4_000).await;

    // The warning; Auto Scaling starts replacing it 6 s later, EC2 reclaims it at 25 s.
    s.w.spot_interruption(&victim, Some(6_000), 25_000)
        .expect("spot interruption");
    until("the warning was handled", Duration::from_secs(10), || {
        handled_count(&s, "spot-interruption-warning") == 1
    })
    .await;
    let warning = s
        .handled()
        .into_iter()
        .find(|h| h.is("spot-interruption-warning"))
        .expect("handled");
    assert_eq!(
        warning
            .summary
            .changes
            .first()
            .map(|c| c.change.pools[0].remove.len()),
        Some(1)
    );
    // Out of rotation on every host once the command reached them.
    until(
        "the victim out of rotation everywhere",
        Duration::from_secs(5),
        || s.hosts.iter().all(|h| out_of_rotation(h, &victim_ip)),
    )
    .await;
    // From then on it gets no new request while the other member does.
    let (v0, o0) = (served(&victim_ip, s.port), served(&other_ip, s.port));
    let mut watched = 0;
    until(
        "the other member served 100 more",
        Duration::from_secs(10),
        || {
            watched += 1;
            served(&other_ip, s.port) > o0 + 100
        },
    )
    .await;
    assert_eq!(
        served(&victim_ip, s.port),
        v0,
        "the interrupted member got new requests after the warning was applied"
    );
    assert!(watched > 1);
    // The request in flight completed whole: it fit the deadline.
    for r in requests {
        let (status, len) = r.join().expect("thread").expect("the request in flight");
        assert_eq!(status, 200);
        assert!(len >= 4, "{len} bytes");
    }

    // The schedule, while the group still lists it InService: it stays out.
    schedule(&s).await;
    for h in &s.hosts {
        assert!(
            out_of_rotation(h, &victim_ip),
            "the schedule brought the interrupted member back on {}: {:?}",
            h.name,
            status_of(h, &victim_ip)
        );
    }

    // Auto Scaling's terminate action: continued from the drain, long before the reclaim.
    let (result, by, started, done) = s
        .completed(&victim, "terminate", Duration::from_secs(20))
        .await;
    assert_eq!((result.as_str(), by.as_str()), ("CONTINUE", "api"));
    assert!(
        done - started < 5_000,
        "continued {} ms after it started",
        done - started
    );
    // The replacement joins; the victim never came back on any host.
    let replacement = s.new_member(&ids).await;
    let (result, _, _, _) = s
        .completed(&replacement, "launch", Duration::from_secs(20))
        .await;
    assert_eq!(result, "CONTINUE");
    for h in &s.hosts {
        assert!(
            out_of_rotation(h, &victim_ip),
            "{:?}",
            status_of(h, &victim_ip)
        );
    }
    // Its termination cost no request.
    until("the victim terminated", Duration::from_secs(30), || {
        s.fleet
            .instance(&victim)
            .is_some_and(|i| i.stopped_ms.is_some())
    })
    .await;
    no_failures(loads);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_interrupted_tag_put_by_hand_drains_nothing_and_abandons_no_launch() {
    let mut spec = StackSpec::new(300, 30);
    // A deadline EC2 could have given: the only thing wrong is who put it where.
    let deadline = harness::unix_ms() + 100_000;
    spec.tags
        .push((infra::aws::INTERRUPTED_TAG, deadline.to_string()));
    let s = Stack::start(spec).await;
    // Both launches are continued (not abandoned), with the tag on each instance.
    let ids = s.launched(2).await;
    for id in &ids {
        let out = s.w.ec2.describe_instances().instance_ids(id).send().await;
        let tagged = out.ok().is_some_and(|o| {
            o.reservations()
                .iter()
                .flat_map(|r| r.instances())
                .any(|i| {
                    i.tags()
                        .iter()
                        .any(|t| t.key() == Some(infra::aws::INTERRUPTED_TAG))
                })
        });
        assert!(tagged, "{id} carries the tag it launched with");
    }
    let loads = load(&s).await;
    schedule(&s).await;
    for id in &ids {
        let ip = s.w.private_ip(id).await.expect("address");
        for h in &s.hosts {
            assert_eq!(status_of(h, &ip).as_deref(), Some("UP"), "{id}");
        }
    }
    no_failures(loads);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebalance_recommendation_drains_only_with_rebalance_drain() {
    for (setting, drains) in [("ignore", false), ("drain", true)] {
        let mut spec = StackSpec::new(300, 30);
        spec.env.push(("REBALANCE", setting.into()));
        let s = Stack::start(spec).await;
        let ids = s.launched(2).await;
        let ip = s.w.private_ip(&ids[0]).await.expect("address");
        let loads = load(&s).await;
        s.w.rebalance_recommendation(&ids[0]).expect("rebalance");
        until(
            "the recommendation was handled",
            Duration::from_secs(10),
            || handled_count(&s, "rebalance-recommendation") == 1,
        )
        .await;
        if drains {
            until("drained everywhere", Duration::from_secs(5), || {
                s.hosts.iter().all(|h| out_of_rotation(h, &ip))
            })
            .await;
            // It stays out through the schedule.
            schedule(&s).await;
            assert!(s.hosts.iter().all(|h| out_of_rotation(h, &ip)));
        } else {
            let h = s.handled();
            let handled = h
                .iter()
                .find(|h| h.is("rebalance-recommendation"))
                .expect("handled");
            assert!(
                handled
                    .summary
                    .ignored
                    .iter()
                    .any(|i| i.contains("REBALANCE is ignore")),
                "{handled:?}"
            );
            schedule(&s).await;
            for h in &s.hosts {
                assert_eq!(status_of(h, &ip).as_deref(), Some("UP"), "{setting}");
            }
        }
        no_failures(loads);
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn warm_pool_instances_join_from_the_pool_and_go_back_drained() {
    let mut spec = StackSpec::new(300, 30);
    spec.warm_pool = Some((1, 2, true));
    let s = Stack::start(spec).await;
    // Two members in service (one cold, one from the pool), the pool refilled behind
    // them; every launch into the pool was continued at once and never reached HAProxy.
    let ids = s.launched(1).await;
    let pooled = pool_until(&s, "the pool holds a stopped instance", |p| {
        p.iter().any(|i| i.state == "Warmed:Stopped")
    })
    .await;
    assert_eq!(pooled.len(), 1, "{pooled:?} {:#?}", s.handled());
    let pooled_id = pooled[0].id.clone();
    let pooled_ip = s.w.private_ip(&pooled_id).await.expect("address");
    let (result, _, _, _) = s
        .completed(&pooled_id, "launch", Duration::from_secs(10))
        .await;
    assert_eq!(
        result, "CONTINUE",
        "a launch into the pool is continued at once"
    );
    for h in &s.hosts {
        assert_eq!(
            status_of(h, &pooled_ip),
            None,
            "a warm instance reached HAProxy"
        );
    }
    // The schedule never adds it.
    schedule(&s).await;
    for h in &s.hosts {
        assert_eq!(
            status_of(h, &pooled_ip),
            None,
            "the schedule added a warm instance"
        );
    }

    let loads = load(&s).await;
    // Scale-out draws it from the pool: it joins health-gated and is continued.
    s.w.scale(GROUP, 2).await.expect("scale out");
    let joined = s.new_member(&ids).await;
    assert_eq!(joined, pooled_id, "scale-out takes the warm instance");
    let records = s.w.actions_of(&joined, "launch").expect("lifecycle");
    assert_eq!(
        records.len(),
        2,
        "into the pool, then into the group: {records:?}"
    );
    until(
        "the pooled instance continued into the group",
        Duration::from_secs(15),
        || {
            s.w.actions_of(&joined, "launch")
                .ok()
                .is_some_and(|r| r.len() == 2 && r[1]["result"] == "CONTINUE")
        },
    )
    .await;
    for h in &s.hosts {
        assert_eq!(status_of(h, &pooled_ip).as_deref(), Some("UP"));
    }

    // Scale-in with reuse: the member leaving goes back to the pool, drained first.
    let before: BTreeSet<String> = s.members(2).await.into_iter().collect();
    s.w.scale(GROUP, 1).await.expect("scale in");
    let leaving = loop {
        let now: BTreeSet<String> =
            s.w.members(GROUP)
                .await
                .expect("members")
                .into_iter()
                .filter(|m| m.state == "InService")
                .map(|m| m.id)
                .collect();
        if now.len() == 1 {
            break before.difference(&now).next().cloned().expect("one left");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let leaving_ip = s.w.private_ip(&leaving).await.expect("address");
    let (result, by, _, _) = s
        .completed(&leaving, "terminate", Duration::from_secs(20))
        .await;
    assert_eq!((result.as_str(), by.as_str()), ("CONTINUE", "api"));
    for h in &s.hosts {
        assert!(
            out_of_rotation(h, &leaving_ip),
            "{:?}",
            status_of(h, &leaving_ip)
        );
    }
    let pooled = pool_until(&s, "the member back in the pool", |p| {
        p.iter().any(|i| i.id == leaving)
    })
    .await;
    assert!(pooled.iter().any(|i| i.id == leaving), "{pooled:?}");
    no_failures(loads);
    s.stop().await;
}
