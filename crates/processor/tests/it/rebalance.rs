//! Two processor instances in one consumer group: tasks are split between
//! them (the newcomer restores its tasks from the changelog), the query API
//! answers for the tenants an instance owns and redirects the others, and when
//! one instance stops the other takes its tasks over and restores them.
//! Nothing is lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use prometheus::Registry;
use storefold_processor::{Mode, Processor};
use storefold_runtime::kafka::java_partition;
use storefold_testkit::history::{HistorySpec, history};
use tokio_util::sync::CancellationToken;

const PARTITIONS: i32 = 4;

struct Instance {
    processor: Arc<Processor>,
    token: CancellationToken,
    thread: std::thread::JoinHandle<()>,
    base: String,
}

fn start(env: &Env, state: &str) -> Instance {
    let mut config = env.config.clone();
    config.processor.state_dir = env.dir.path().join(state);
    let processor = Arc::new(
        Processor::new(&config, Registry::new(), env.rt.handle().clone()).expect("processor"),
    );
    let token = CancellationToken::new();
    let base = serve_http(env, &processor);
    let thread = {
        let p = processor.clone();
        let t = token.clone();
        let opts = storefold_processor::options(&config, Mode::Group);
        std::thread::spawn(move || {
            p.run_blocking(opts, t).expect("processor run");
        })
    };
    Instance {
        processor,
        token,
        thread,
        base,
    }
}

fn owned(i: &Instance) -> Vec<i32> {
    i.processor
        .owned
        .read()
        .expect("lock")
        .keys()
        .copied()
        .collect()
}

fn metrics(i: &Instance) -> String {
    storefold_runtime::metrics::encode(&i.processor.registry)
}

/// Sum of the lag gauges, once every owned task has published one.
fn lag(i: &Instance) -> Option<i64> {
    let text = metrics(i);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("storefold_processor_consumer_lag{"))
        .collect();
    if lines.len() < owned(i).len() || owned(i).is_empty() {
        return None;
    }
    Some(
        lines
            .iter()
            .filter_map(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
            .sum(),
    )
}

fn wait(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_stopped_instance_hands_its_tasks_over_and_nothing_is_lost() {
    let env = env(PARTITIONS);
    let events = history(&HistorySpec {
        tenants: 8,
        customers_per_tenant: 40,
        events: 2400,
        duplicate_pct: 3,
        seed: 5,
    });
    let (first, second) = events.split_at(events.len() / 2);
    produce(&env.config, first);

    let a = start(&env, "state-a");
    wait("a to own every task", Duration::from_secs(60), || {
        owned(&a).len() == PARTITIONS as usize
    });
    wait("a to fold the first half", Duration::from_secs(120), || {
        lag(&a) == Some(0)
    });

    let b = start(&env, "state-b");
    // b restores its tasks before it reports them: on two loaded cores that
    // took over a minute once index records carried claim evidence.
    wait(
        "the group to split the tasks",
        Duration::from_secs(360),
        || {
            let (oa, ob) = (owned(&a), owned(&b));
            !oa.is_empty() && !ob.is_empty() && oa.len() + ob.len() == PARTITIONS as usize
        },
    );
    let b_tasks = owned(&b);
    assert!(
        metrics(&b).contains("storefold_processor_restore_records_total"),
        "b restored its tasks from the changelog"
    );

    // The query API: b answers for its tenants from the state it restored, a
    // says it does not own them.
    let (want_customers, _) = reference(first);
    let on_b = want_customers
        .values()
        .find(|c| {
            c.email.is_some() && b_tasks.contains(&java_partition(c.tenant.as_bytes(), PARTITIONS))
        })
        .expect("a customer with an email on one of b's tasks");
    let client = storefold_testkit::http_client();
    let email = on_b.email.clone().expect("email");
    let (from_b, from_a, by_id, unknown) = env.rt.block_on(async {
        let q = |base: &str| {
            format!(
                "{base}/v1/tenants/{}/customers?email={}",
                on_b.tenant,
                email.replace('+', "%2B")
            )
        };
        let from_b = client
            .get(q(&b.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("b");
        let status_b = from_b.status().as_u16();
        let body_b: serde_json::Value =
            serde_json::from_slice(&from_b.bytes().await.expect("body")).expect("json");
        let from_a = client
            .get(q(&a.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("a");
        let status_a = from_a.status().as_u16();
        let body_a: serde_json::Value =
            serde_json::from_slice(&from_a.bytes().await.expect("body")).expect("json");
        let by_id = client
            .get(format!(
                "{}/v1/tenants/{}/customers/{}",
                b.base, on_b.tenant, on_b.customer_id
            ))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("by id");
        let unknown = client
            .get(format!(
                "{}/v1/tenants/{}/orders/shopify:1",
                b.base, on_b.tenant
            ))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("unknown");
        (
            (status_b, body_b),
            (status_a, body_a),
            by_id.status().as_u16(),
            unknown.status().as_u16(),
        )
    });
    assert_eq!(from_b.0, 200, "{}", from_b.1);
    assert_eq!(from_b.1["customer_id"], on_b.customer_id.as_str());
    assert_eq!(from_b.1["email"], email.as_str());
    assert_eq!(from_a.0, 421, "{}", from_a.1);
    assert_eq!(from_a.1["reason"], "not_owner");
    assert_eq!(by_id, 200);
    assert_eq!(unknown, 404);

    // More input, then a stops: b takes every task over.
    produce(&env.config, second);
    a.token.cancel();
    a.thread.join().expect("a stopped");
    wait("b to own every task", Duration::from_secs(120), || {
        owned(&b).len() == PARTITIONS as usize
    });
    wait("b to fold everything", Duration::from_secs(180), || {
        lag(&b) == Some(0)
    });
    b.token.cancel();
    b.thread.join().expect("b stopped");

    let got = state(&env.dir.path().join("state-b"), PARTITIONS);
    let want = reference(&events);
    assert_eq!(got.0.len(), want.0.len(), "customers");
    assert_eq!(got.1.len(), want.1.len(), "orders");
    assert_eq!(got, want, "b's state is the fold of every event");
}
