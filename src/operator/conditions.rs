//! Status conditions: merging the operator's conditions into the current ones so that
//! `lastTransitionTime` moves only when a status changes, and spotting transitions for Events.
use super::crd::{Condition, ConditionStatus};

/// A condition the operator wants, before timestamps and generation are attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WantedCondition {
    pub type_: &'static str,
    pub status: ConditionStatus,
    pub reason: String,
    pub message: String,
}

impl WantedCondition {
    pub fn new(
        type_: &'static str,
        status: ConditionStatus,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Turns wanted conditions into full ones: keeps the previous `lastTransitionTime` when the status is
/// unchanged, stamps `now` when it changed or is new. Only the wanted types are returned: conditions
/// other writers own (Registered) are left out so server-side apply leaves them alone.
pub fn merge(
    current: &[Condition],
    wanted: &[WantedCondition],
    generation: Option<i64>,
    now: &str,
) -> Vec<Condition> {
    wanted
        .iter()
        .map(|w| {
            let previous = find(current, w.type_);
            let last_transition_time = match previous {
                Some(prev) if prev.status == w.status && prev.last_transition_time.is_some() => {
                    prev.last_transition_time.clone()
                }
                _ => Some(now.to_string()),
            };
            Condition {
                type_: w.type_.to_string(),
                status: w.status,
                reason: w.reason.clone(),
                message: w.message.clone(),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// The condition of a type, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// A status or reason change of one condition, worth an Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub type_: String,
    pub status: ConditionStatus,
    pub reason: String,
    pub message: String,
}

/// Conditions whose status or reason differ from before (new conditions count as transitions).
pub fn transitions(current: &[Condition], merged: &[Condition]) -> Vec<Transition> {
    merged
        .iter()
        .filter(|new| {
            find(current, &new.type_)
                .is_none_or(|old| old.status != new.status || old.reason != new.reason)
        })
        .map(|c| Transition {
            type_: c.type_.clone(),
            status: c.status,
            reason: c.reason.clone(),
            message: c.message.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(type_: &str, status: ConditionStatus, reason: &str, ltt: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status,
            reason: reason.into(),
            message: String::new(),
            observed_generation: Some(1),
            last_transition_time: Some(ltt.into()),
        }
    }

    #[test]
    fn unchanged_status_keeps_transition_time_but_takes_new_generation_and_message() {
        let current = vec![cond("Built", ConditionStatus::False, "Building", "t0")];
        let wanted = [WantedCondition::new(
            "Built",
            ConditionStatus::False,
            "Building",
            "still building",
        )];
        let merged = merge(&current, &wanted, Some(2), "t1");
        assert_eq!(merged[0].last_transition_time.as_deref(), Some("t0"));
        assert_eq!(merged[0].observed_generation, Some(2));
        assert_eq!(merged[0].message, "still building");
        assert!(transitions(&current, &merged).is_empty());
    }

    #[test]
    fn changed_status_moves_transition_time_and_is_a_transition() {
        let current = vec![cond("Built", ConditionStatus::False, "Building", "t0")];
        let wanted = [WantedCondition::new(
            "Built",
            ConditionStatus::True,
            "Built",
            "",
        )];
        let merged = merge(&current, &wanted, Some(1), "t1");
        assert_eq!(merged[0].last_transition_time.as_deref(), Some("t1"));
        let t = transitions(&current, &merged);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].status, ConditionStatus::True);
    }

    #[test]
    fn reason_change_is_a_transition_without_moving_the_time() {
        let current = vec![cond("Ready", ConditionStatus::False, "PodPending", "t0")];
        let wanted = [WantedCondition::new(
            "Ready",
            ConditionStatus::False,
            "NotRegistered",
            "",
        )];
        let merged = merge(&current, &wanted, Some(1), "t1");
        assert_eq!(merged[0].last_transition_time.as_deref(), Some("t0"));
        assert_eq!(transitions(&current, &merged).len(), 1);
    }

    #[test]
    fn conditions_owned_by_others_are_not_returned() {
        let current = vec![
            cond("Registered", ConditionStatus::True, "Registered", "t0"),
            cond("Built", ConditionStatus::True, "Built", "t0"),
        ];
        let wanted = [WantedCondition::new(
            "Built",
            ConditionStatus::True,
            "Built",
            "",
        )];
        let merged = merge(&current, &wanted, Some(1), "t1");
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].type_, "Built");
    }

    #[test]
    fn a_new_condition_is_stamped_now() {
        let wanted = [WantedCondition::new(
            "Launched",
            ConditionStatus::Unknown,
            "Pending",
            "",
        )];
        let merged = merge(&[], &wanted, None, "t5");
        assert_eq!(merged[0].last_transition_time.as_deref(), Some("t5"));
        assert_eq!(transitions(&[], &merged).len(), 1);
    }
}
