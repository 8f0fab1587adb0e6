//! Running the due tasks' commits (and the opening of newly assigned tasks)
//! on parallel lanes without losing a result.
//!
//! A lane is one scoped thread running one step of several tasks' commits in
//! turn. Each task's step runs under `catch_unwind`, so a panic in one commit
//! becomes that task's error ([`TaskError::Panicked`]) and the task is restarted from its
//! committed state like any other failed batch; the other tasks of the lane
//! still commit, and no task is left out of the results.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::task::TaskError;

/// Runs `commit` for every `(partition, item)` of `work` on at most `lanes`
/// threads and returns one result per item, in no particular order. A panic
/// in `commit` is returned as [`TaskError::Panicked`] with its message.
pub(crate) fn run<T: Send, R: Send>(
    work: Vec<(i32, T)>,
    lanes: usize,
    commit: impl Fn(T) -> Result<R, TaskError> + Sync,
) -> Vec<(i32, Result<R, TaskError>)> {
    if work.is_empty() {
        return Vec::new();
    }
    let lanes = work.len().min(lanes.max(1));
    let mut per_lane: Vec<Vec<(i32, T)>> = (0..lanes).map(|_| Vec::new()).collect();
    for (i, w) in work.into_iter().enumerate() {
        per_lane[i % lanes].push(w);
    }
    let commit = &commit;
    std::thread::scope(|scope| {
        let handles: Vec<_> = per_lane
            .into_iter()
            .map(|lane| {
                scope.spawn(move || {
                    lane.into_iter()
                        .map(|(p, item)| {
                            let r = catch_unwind(AssertUnwindSafe(|| commit(item)))
                                .unwrap_or_else(|panic| Err(TaskError::Panicked(message(&*panic))));
                            (p, r)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            // Every panic of a commit is caught inside the lane, so a lane
            // thread itself cannot end in a panic.
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// The text of a panic payload (`panic!` with a literal or a format).
fn message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Calls `seek` for every `(topic, offset)` of a restarted task, retrying a
/// failed seek up to `attempts` times. An error names the topic: the caller
/// must not let the task fold from wherever the consumer happens to be, which
/// would skip the abandoned batch's records.
pub(crate) fn seek_all<'a>(
    positions: impl IntoIterator<Item = (&'a str, i64)>,
    attempts: u32,
    mut seek: impl FnMut(&str, i64) -> Result<(), String>,
) -> Result<(), String> {
    for (topic, offset) in positions {
        let mut tried = 0;
        loop {
            tried += 1;
            match seek(topic, offset) {
                Ok(()) => break,
                Err(e) if tried >= attempts => {
                    return Err(format!(
                        "seek of {topic} to offset {offset} failed {tried} times: {e}"
                    ));
                }
                Err(e) => tracing::warn!(topic, offset, error = %e, "seek failed; retrying"),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_commit_is_that_task_s_error_and_the_others_still_commit() {
        let work: Vec<(i32, i32)> = (0..10).map(|p| (p, p * 10)).collect();
        let mut results = run(work, 3, |x| {
            if x == 40 {
                panic!("lane bug at {x}");
            }
            Ok(x + 1)
        });
        results.sort_by_key(|(p, _)| *p);
        assert_eq!(results.len(), 10, "every task has a result");
        for (p, r) in &results {
            match (p, r) {
                (4, Err(TaskError::Panicked(m))) => assert_eq!(m, "lane bug at 40"),
                (4, other) => panic!("task 4 should have failed, got {other:?}"),
                (p, Ok(v)) => assert_eq!(*v, p * 10 + 1),
                (p, Err(e)) => panic!("task {p} failed: {e}"),
            }
        }
        assert!(
            !TaskError::Panicked(String::new()).is_fatal(),
            "a panic restarts the task"
        );
    }

    #[test]
    fn a_static_panic_message_is_kept_too() {
        let results = run(vec![(7, ())], 64, |()| -> Result<(), TaskError> {
            panic!("static")
        });
        assert!(matches!(&results[..], [(7, Err(TaskError::Panicked(m)))] if m == "static"));
    }

    #[test]
    fn seeks_are_retried_then_reported_with_the_topic() {
        let mut calls = Vec::new();
        let mut fails_left = 2;
        let ok = seek_all([("raw.shopify", 5), ("raw.stripe", 9)], 3, |t, o| {
            calls.push((t.to_owned(), o));
            if t == "raw.stripe" && fails_left > 0 {
                fails_left -= 1;
                return Err("broker down".into());
            }
            Ok(())
        });
        assert_eq!(ok, Ok(()));
        assert_eq!(calls.len(), 4, "one seek, then two failures and a success");

        let err = seek_all([("raw.stripe", 9)], 3, |_, _| Err("broker down".into())).unwrap_err();
        assert_eq!(
            err,
            "seek of raw.stripe to offset 9 failed 3 times: broker down"
        );
    }
}
