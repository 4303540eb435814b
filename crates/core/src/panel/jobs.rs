//! Long operations (a verification, the DNS tester) as jobs: the request that starts one answers
//! at once with the job's id, the work runs on the core's worker, and the page polls
//! `GET /api/jobs/{id}` until it is done. A job is visible only to the account that started it.
//! Jobs live as long as the server process: a restart loses the running ones (the page says so
//! by its 404 and the customer presses the button again).

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;
use serde_json::{json, Value};

use super::Failure;
use crate::{Pending, Result, Timestamp};

/// Jobs one account may have running at once.
pub const MAX_RUNNING_PER_ACCOUNT: usize = 4;
/// Jobs kept at once, running or finished.
pub const MAX_JOBS: usize = 10_000;
/// A finished job's result is kept this long for the page to read.
pub const KEEP_FINISHED: i64 = 15 * 60;

type Poll = Box<dyn FnMut() -> Option<std::result::Result<Value, Value>> + Send>;

enum State {
    Running(Poll),
    Finished { at: Timestamp, outcome: std::result::Result<Value, Value> },
}

struct Job {
    account: String,
    domain: String,
    kind: &'static str,
    started_at: Timestamp,
    state: State,
}

#[derive(Default)]
pub struct Jobs {
    map: Mutex<HashMap<String, Job>>,
}

impl Jobs {
    /// Keeps `pending` as a job of `account`'s; returns its id.
    pub(crate) fn start<T: Serialize + Send + 'static>(
        &self,
        account: &str,
        domain: &str,
        kind: &'static str,
        pending: Pending<Result<T>>,
        now: Timestamp,
    ) -> std::result::Result<String, Failure> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, j| !matches!(j.state, State::Finished { at, .. } if at + KEEP_FINISHED <= now));
        let running = map.values().filter(|j| j.account == account && matches!(j.state, State::Running(_))).count();
        if running >= MAX_RUNNING_PER_ACCOUNT || map.len() >= MAX_JOBS {
            let mut f = Failure::new(429, "busy", "other checks of yours are still running; wait for them to finish");
            f.retry_after = Some(5);
            return Err(f);
        }
        let id = super::session::new_secret()?;
        let poll: Poll = Box::new(move || {
            pending.try_take().map(|result| match result {
                Ok(value) => {
                    serde_json::to_value(value).map_err(|e| json!({"error": "internal", "message": e.to_string()}))
                }
                Err(e) => {
                    let f = Failure::from(e);
                    Err(json!({"error": f.code, "message": f.message}))
                }
            })
        });
        map.insert(
            id.clone(),
            Job {
                account: account.to_string(),
                domain: domain.to_string(),
                kind,
                started_at: now,
                state: State::Running(poll),
            },
        );
        Ok(id)
    }

    /// The job as the page sees it: `running`, or `done` with its result, or `failed` with the error.
    pub(crate) fn poll(&self, account: &str, id: &str, now: Timestamp) -> std::result::Result<Value, Failure> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let job = map.get_mut(id).filter(|j| j.account == account).ok_or_else(|| {
            Failure::new(404, "not-found", "no such job (it may have ended long ago or the server restarted)")
        })?;
        if let State::Running(poll) = &mut job.state {
            if let Some(outcome) = poll() {
                job.state = State::Finished { at: now, outcome };
            }
        }
        let mut v = json!({"id": id, "kind": job.kind, "domain": job.domain, "started_at": job.started_at});
        match &job.state {
            State::Running(_) => v["state"] = json!("running"),
            State::Finished { outcome: Ok(result), .. } => {
                v["state"] = json!("done");
                v["result"] = result.clone();
            }
            State::Finished { outcome: Err(error), .. } => {
                v["state"] = json!("failed");
                v["error"] = error.clone();
            }
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_is_polled_until_done_and_only_by_its_account() {
        let jobs = Jobs::default();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = std::sync::Mutex::new(rx);
        let pending = Pending::spawn(async move {
            let _ = tokio::task::spawn_blocking(move || rx.lock().unwrap().recv()).await;
            Ok::<_, crate::Error>(json!({"answer": 42}))
        })
        .unwrap();
        let id = jobs.start("alice@a.example", "a.example", "dns-test", pending, 0).unwrap();
        assert_eq!(jobs.poll("alice@a.example", &id, 1).unwrap()["state"], "running");
        assert_eq!(jobs.poll("bob@b.example", &id, 1).unwrap_err().status, 404);
        tx.send(()).unwrap();
        let done = loop {
            let v = jobs.poll("alice@a.example", &id, 2).unwrap();
            if v["state"] != "running" {
                break v;
            }
            std::thread::yield_now();
        };
        assert_eq!(done["state"], "done");
        assert_eq!(done["result"]["answer"], 42);
    }

    #[test]
    fn a_failed_job_says_why_and_accounts_cannot_start_without_end() {
        let jobs = Jobs::default();
        let failing = Pending::spawn(async { Err::<Value, _>(crate::Error::NotAllowed("no".into())) }).unwrap();
        let id = jobs.start("a@x.example", "x.example", "verify", failing, 0).unwrap();
        let v = loop {
            let v = jobs.poll("a@x.example", &id, 0).unwrap();
            if v["state"] != "running" {
                break v;
            }
            std::thread::yield_now();
        };
        assert_eq!((v["state"].as_str(), v["error"]["error"].as_str()), (Some("failed"), Some("not-allowed")));
        let (_tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        for _ in 0..MAX_RUNNING_PER_ACCOUNT {
            let rx = rx.clone();
            let p = Pending::spawn(async move {
                let _ = tokio::task::spawn_blocking(move || rx.lock().unwrap().recv()).await;
                Ok::<_, crate::Error>(1)
            })
            .unwrap();
            jobs.start("a@x.example", "x.example", "verify", p, 0).unwrap();
        }
        let p = Pending::spawn(async { Ok::<_, crate::Error>(1) }).unwrap();
        assert_eq!(jobs.start("a@x.example", "x.example", "verify", p, 0).unwrap_err().status, 429);
    }
}
