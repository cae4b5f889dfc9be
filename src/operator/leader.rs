//! Leader election on a coordination.k8s.io/v1 Lease (kube 5 has none built in), so two replicas never
//! reconcile at once. The decision is a pure function; the loop around it only reads and writes the Lease.
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;
use tracing::{info, warn};

use super::server::Health;

/// The Lease as the decision sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseView {
    pub holder: Option<String>,
    pub renewed: Option<Timestamp>,
    pub duration: Duration,
    pub transitions: i32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseDecision {
    /// We hold it and it is ours to renew.
    Renew,
    /// Free or expired: take it (bumping leaseTransitions).
    Acquire,
    /// Someone else holds a live lease.
    Follow { holder: String },
}

/// What to do about a Lease at `now` for candidate `me`.
pub fn decide(lease: Option<&LeaseView>, me: &str, now: Timestamp) -> LeaseDecision {
    let Some(lease) = lease else {
        return LeaseDecision::Acquire;
    };
    match (&lease.holder, lease.renewed) {
        (Some(holder), _) if holder == me => LeaseDecision::Renew,
        (Some(holder), Some(renewed)) if !holder.is_empty() => {
            let duration = SignedDuration::try_from(lease.duration).unwrap_or(SignedDuration::MAX);
            if now.duration_since(renewed) < duration {
                LeaseDecision::Follow {
                    holder: holder.clone(),
                }
            } else {
                LeaseDecision::Acquire
            }
        }
        _ => LeaseDecision::Acquire,
    }
}

fn view(lease: &Lease) -> LeaseView {
    let spec = lease.spec.clone().unwrap_or_default();
    LeaseView {
        holder: spec.holder_identity,
        renewed: spec.renew_time.or(spec.acquire_time).map(|t| t.0),
        duration: Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(1) as u64),
        transitions: spec.lease_transitions.unwrap_or(0),
    }
}

/// Settings of the election.
#[derive(Clone, Debug)]
pub struct Election {
    pub namespace: String,
    pub lease_name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub retry_period: Duration,
}

/// One round: read, decide, write. Returns whether we lead afterwards.
pub async fn round(api: &Api<Lease>, e: &Election) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let existing = api.get_opt(&e.lease_name).await?;
    let current = existing.as_ref().map(view);
    let decision = decide(current.as_ref(), &e.identity, now);
    let spec = |acquire: Option<Timestamp>, transitions: i32| LeaseSpec {
        holder_identity: Some(e.identity.clone()),
        lease_duration_seconds: Some(e.lease_duration.as_secs() as i32),
        acquire_time: acquire.map(MicroTime),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..Default::default()
    };
    match (decision, existing) {
        (LeaseDecision::Follow { .. }, _) => Ok(false),
        (LeaseDecision::Acquire, None) => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(e.lease_name.clone()),
                    ..Default::default()
                },
                spec: Some(spec(Some(now), 0)),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(err) => Err(err),
            }
        }
        (decision, Some(mut lease)) => {
            // Replace with the read resourceVersion: a concurrent writer makes this fail with 409.
            let transitions = current.map(|c| c.transitions).unwrap_or(0);
            let acquire = lease.spec.as_ref().and_then(|s| s.acquire_time.clone());
            lease.spec = Some(if decision == LeaseDecision::Renew {
                let mut s = spec(None, transitions);
                s.acquire_time = acquire;
                s
            } else {
                spec(Some(now), transitions + 1)
            });
            match api
                .replace(&e.lease_name, &PostParams::default(), &lease)
                .await
            {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(err) => Err(err),
            }
        }
        (LeaseDecision::Renew, None) => Ok(false),
    }
}

/// Runs the election forever; the watch channel says whether we lead. Leadership is dropped when
/// renewing fails for longer than the lease, so a partitioned replica stops before another takes over.
pub async fn run(
    client: Client,
    election: Election,
    leading: watch::Sender<bool>,
    health: Arc<Health>,
) {
    let api: Api<Lease> = Api::namespaced(client, &election.namespace);
    let mut last_success = tokio::time::Instant::now();
    loop {
        let lead = match round(&api, &election).await {
            Ok(lead) => {
                last_success = tokio::time::Instant::now();
                health.observe_lease(true);
                lead
            }
            Err(error) => {
                warn!(%error, "leader election round failed");
                health.observe_lease(false);
                *leading.borrow() && last_success.elapsed() < election.lease_duration
            }
        };
        if lead != *leading.borrow() {
            info!(leading = lead, identity = %election.identity, "leadership changed");
        }
        if leading.send(lead).is_err() {
            return;
        }
        tokio::time::sleep(election.retry_period).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed_secs: i64) -> LeaseView {
        LeaseView {
            holder: Some(holder.into()),
            renewed: Some(Timestamp::from_second(renewed_secs).expect("test time")),
            duration: Duration::from_secs(15),
            transitions: 3,
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("test time")
    }

    #[test]
    fn missing_lease_is_acquired() {
        assert_eq!(decide(None, "a", at(100)), LeaseDecision::Acquire);
    }

    #[test]
    fn own_lease_is_renewed_even_when_late() {
        assert_eq!(
            decide(Some(&lease("a", 0)), "a", at(100)),
            LeaseDecision::Renew
        );
    }

    #[test]
    fn live_lease_of_another_is_followed() {
        assert_eq!(
            decide(Some(&lease("b", 90)), "a", at(100)),
            LeaseDecision::Follow { holder: "b".into() }
        );
    }

    #[test]
    fn expired_lease_of_another_is_taken() {
        assert_eq!(
            decide(Some(&lease("b", 85)), "a", at(100)),
            LeaseDecision::Acquire
        );
    }

    #[test]
    fn released_lease_is_taken() {
        let mut l = lease("", 99);
        assert_eq!(decide(Some(&l), "a", at(100)), LeaseDecision::Acquire);
        l.holder = None;
        assert_eq!(decide(Some(&l), "a", at(100)), LeaseDecision::Acquire);
    }
}
