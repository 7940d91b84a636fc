//! The rotator's decisions, made without I/O: from the user's keys as IAM lists them, the
//! target's spec and recorded state, and the clock, what a run does next ([`plan`]), what a
//! destination holds ([`Held`]), which key ID goes back after a pair was left incomplete
//! ([`put_back`]), and how a run ends ([`settle`]). The actor ([`super::act`]) carries them out.

use crate::domain::rotation::{
    AccessKeyInfo, Creating, Destination, DestinationState, KeyRef, RotationState, TargetSpec, key_to_make_room,
};
use crate::ports::IamUser;

/// What a run does to one target, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Plan {
    /// The state the run carries on from: what IAM no longer has forgotten, and an interrupted
    /// key creation and the replaced keys sorted out. The plan's deletions are not in it yet: the
    /// actor records each once IAM has done it ([`Deletion::forget`]), so that a state saved on the
    /// way never claims a deletion IAM has not done.
    pub state: RotationState,
    /// The current key, if IAM lists it as inactive: it was deactivated outside the rotator (an
    /// exposed key, say), and is replaced now.
    pub deactivated_outside: Option<String>,
    /// The steps, in order; a step that fails ends the run.
    pub steps: Vec<Step>,
}

/// One step of a [`Plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    /// Delete one of the user's keys.
    Delete { key_id: String, why: Deletion },
    /// The run is refused, and nothing is saved.
    Refuse(String),
    /// A key is made only with time to prove it and write at least one destination: without it
    /// the run stops here.
    CheckTime,
    /// No room for a new key: why is recorded, and the run ends. `waiting` when only a replaced
    /// key's grace period is in the way, which clears by itself; refused otherwise.
    Blocked { why: String, waiting: bool },
    /// Make a new key, recorded (encrypted) before anything else. `existing` are the user's keys
    /// just before; `retiring` is the key it replaces, still active until every destination holds
    /// the new one.
    Create { existing: Vec<String>, retiring: Option<KeyRef> },
    /// Catch up with the current key, whose secret the table holds encrypted.
    Open,
    /// Prove the key works, then write `destinations` (all of them for a key this run made).
    Write { destinations: Vec<Destination>, made_key: bool },
}

/// Why a key is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Deletion {
    /// A run died between creating it and recording it: it was never handed out.
    Orphan,
    /// A replaced key whose grace period is over.
    GraceOver,
    /// An inactive key that is neither current nor in its grace period, in the way of a new one.
    Room,
}

/// Why the rotator may not manage IAM user `user` (IAM lists it as `iam`), if it may not.
pub(super) fn user_refusal(user: &str, iam: &IamUser, allowed_path: &str) -> Option<String> {
    if iam.name != user {
        // IAM names ignore case: two spellings would be two targets fighting over one user's keys.
        return Some(format!(
            "the target names IAM user {user:?}, which IAM spells {:?}: put the target under that exact name",
            iam.name
        ));
    }
    (!iam.path.starts_with(allowed_path)).then(|| {
        format!(
            "IAM user {user:?} has path {:?}, outside {allowed_path:?}, the only path this rotator may manage",
            iam.path
        )
    })
}

/// The run for `spec` at `now`, from its recorded `state`, the user's `keys`, whether the table
/// holds the current key's secret (`pending`) and whether the operator forces a new key.
pub(super) fn plan(
    spec: &TargetSpec,
    mut state: RotationState,
    keys: &[AccessKeyInfo],
    pending: bool,
    force: bool,
    now: i64,
) -> Plan {
    let mut keys = keys.to_vec();
    let mut steps = Vec::new();
    let grace = i64::from(spec.grace_hours) * 3600;
    state.last_run = Some(now);
    let deactivated_outside = match reconcile(spec, &mut state, &mut keys, &mut steps, now) {
        Ok(deactivated_outside) => deactivated_outside,
        Err(why) => return Plan { state, deactivated_outside: None, steps: vec![Step::Refuse(why)] },
    };

    let current_active = state.current.as_ref().is_some_and(|c| keys.iter().any(|k| k.key_id == c.key_id && k.active));
    let behind: Vec<Destination> = state.behind(spec).into_iter().cloned().collect();
    // A run stopped while writing, but everything it wrote was recorded: the state can vouch for
    // every destination again.
    if behind.is_empty() {
        state.writing = None;
    }
    let can_catch_up = current_active && pending;
    let rotate = !current_active
        || (force && behind.is_empty())
        || (behind.is_empty() && state.aged(spec, now))
        || (!behind.is_empty() && !can_catch_up);
    if !rotate {
        if !behind.is_empty() {
            steps.push(Step::Open);
            steps.push(Step::Write { destinations: behind, made_key: false });
        }
        return Plan { state, deactivated_outside, steps };
    }

    steps.push(Step::CheckTime);
    match key_to_make_room(&keys, &state, grace, now) {
        Err(why) => {
            // Only a replaced key's grace period in the way: this clears by itself.
            let waiting = current_active && state.retiring.is_none() && keys.iter().filter(|k| k.active).count() < 2;
            steps.push(Step::Blocked { why, waiting });
            return Plan { state, deactivated_outside, steps };
        }
        Ok(Some(id)) => delete(&mut steps, &mut keys, id, Deletion::Room),
        Ok(None) => {}
    }
    let active = keys.iter().find(|k| k.active).map(|k| KeyRef { key_id: k.key_id.clone(), at: k.created });
    let existing = keys.iter().map(|k| k.key_id.clone()).collect();
    steps.push(Step::Create { existing, retiring: state.retiring.clone().or(active) });
    steps.push(Step::Write { destinations: spec.destinations.clone(), made_key: true });
    Plan { state, deactivated_outside, steps }
}

/// Brings `state` in line with the user's `keys` (IAM's word) before anything is decided, adding
/// the deletions that takes to `steps` (and taking the deleted keys off `keys`): the current key
/// if it was deactivated outside the rotator, or why the run is refused.
fn reconcile(
    spec: &TargetSpec,
    state: &mut RotationState,
    keys: &mut Vec<AccessKeyInfo>,
    steps: &mut Vec<Step>,
    now: i64,
) -> Result<Option<String>, String> {
    let grace = i64::from(spec.grace_hours) * 3600;
    // What IAM no longer has is forgotten.
    let exists = |id: &str, keys: &[AccessKeyInfo]| keys.iter().any(|k| k.key_id == id);
    if state.current.as_ref().is_some_and(|k| !exists(&k.key_id, keys)) {
        state.current = None;
    }
    if state.retiring.as_ref().is_some_and(|k| !exists(&k.key_id, keys)) {
        state.retiring = None;
    }
    // A run that died between creating a key and recording it: that key was never handed out
    // (destinations are written only after it is recorded), so it goes, and its marker with it.
    if let Some(creating) = state.creating.clone() {
        let orphans = orphans(&creating, state, keys);
        if orphans.len() > 1 {
            state.creating = None;
            return Err(format!(
                "keys {orphans:?} were created since an interrupted run and none is recorded; delete the one nobody \
                 uses by hand"
            ));
        }
        if orphans.is_empty() {
            state.creating = None;
        }
        for id in orphans {
            delete(steps, keys, id, Deletion::Orphan);
        }
    }
    let inactive = |id: &str, keys: &[AccessKeyInfo]| keys.iter().any(|k| k.key_id == id && !k.active);
    // A retiring key already inactive with nothing behind: a run deactivated it and could not
    // record that. It is the replaced key, in its grace period from now.
    if let Some(retiring) = state.retiring.clone()
        && state.behind(spec).is_empty()
        && inactive(&retiring.key_id, keys)
    {
        state.retiring = None;
        state.previous = Some(KeyRef { key_id: retiring.key_id, at: now });
    }
    // A current key deactivated outside the rotator is no longer the current one: it is replaced
    // now, and as an inactive key it may make room.
    let deactivated_outside = state.current.take_if(|c| inactive(&c.key_id, keys)).map(|c| c.key_id);
    // A replaced key whose grace period is over goes.
    if let Some(previous) = state.previous.clone() {
        match keys.iter().find(|k| k.key_id == previous.key_id) {
            None => state.previous = None,
            Some(k) if !k.active && now >= previous.at + grace => {
                delete(steps, keys, previous.key_id, Deletion::GraceOver);
            }
            Some(_) => {}
        }
    }
    Ok(deactivated_outside)
}

impl Deletion {
    /// Records in `state` that IAM has deleted `key_id` (deleted for this reason): an orphan's
    /// creation marker goes, and a replaced key is no longer the previous one.
    pub(super) fn forget(self, state: &mut RotationState, key_id: &str) {
        match self {
            Deletion::Orphan => state.creating = None,
            // Defensive for `Room`: a replaced key past its grace period went as `GraceOver` first.
            Deletion::GraceOver | Deletion::Room => {
                state.previous.take_if(|p| p.key_id == key_id);
            }
        }
    }
}

/// Deletes `key_id`: a step, and one key fewer for the steps after it. The state forgets it
/// only once it is done ([`Deletion::forget`]).
fn delete(steps: &mut Vec<Step>, keys: &mut Vec<AccessKeyInfo>, key_id: String, why: Deletion) {
    keys.retain(|k| k.key_id != key_id);
    steps.push(Step::Delete { key_id, why });
}

/// The keys an interrupted key creation (`creating`) left: created around its marker (a minute's
/// clock skew allowed, and the call's own time) and known to nothing. More than one means a key
/// was made by hand since, which is not the rotator's to delete.
fn orphans(creating: &Creating, state: &RotationState, keys: &[AccessKeyInfo]) -> Vec<String> {
    let known = |id: &str| {
        creating.existing.iter().any(|e| e == id)
            || state.current.as_ref().is_some_and(|k| k.key_id == id)
            || state.retiring.as_ref().is_some_and(|k| k.key_id == id)
    };
    keys.iter()
        .filter(|k| !known(&k.key_id) && (creating.at - 60..=creating.at + 120).contains(&k.created))
        .map(|k| k.key_id.clone())
        .collect()
}

/// What a destination's secret goes with before this run writes it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Held {
    /// The state recorded this key ID for it.
    Key(String),
    /// The rotator never wrote it, or only failed to. In the run that made the new key, a working
    /// pair of the user there can only be the key being replaced (a user has two keys at most);
    /// in a later run it may be the new pair.
    NeverWritten,
    /// The state cannot vouch for it (written under other names, or by a run that stopped
    /// before recording what it wrote).
    Unknown,
}

impl Held {
    /// The key ID the destination's secret goes with now, if the state can vouch for it: the one
    /// recorded, written under the names and place the spec has now (`fingerprint`), not left
    /// unknown by a failed put-back, and no run since may have written it without recording that
    /// (`trusted`).
    pub(super) fn of(recorded: Option<&DestinationState>, fingerprint: &str, trusted: bool) -> Held {
        let same_place = recorded.and_then(|s| s.fingerprint.as_deref()).is_none_or(|f| f == fingerprint);
        match recorded {
            _ if !trusted || !same_place => Held::Unknown,
            Some(s) if s.unknown => Held::Unknown,
            Some(DestinationState { key_id: Some(id), .. }) => Held::Key(id.clone()),
            _ => Held::NeverWritten,
        }
    }
}

/// What is done after a write that did not complete the pair.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum PutBack {
    /// The key ID goes back to this one, which the secret beside it goes with.
    To(String),
    /// Nothing to put back: the destination held no pair of the user's, and still holds nothing
    /// that works. It is a plain failure.
    Nothing,
    /// What the destination holds is not known: it is written again (both secrets) at the next run.
    Unknown,
}

/// Which key ID a destination that held `held` gets back, in a run writing `key_id` that made it
/// (`made_key`) to replace `retiring`.
pub(super) fn put_back(held: &Held, made_key: bool, retiring: Option<&str>, key_id: &str) -> PutBack {
    match held {
        // In the run that made the key, a pair put there by hand (or by the tool the rotator
        // replaces) can work only with the key being replaced: the user's other key is the new
        // one, which nothing held before. Anything else was broken before, and stays no worse.
        // (In a later run, the destination may hold the new pair already: unknown.)
        Held::NeverWritten if made_key => match retiring.filter(|id| *id != key_id) {
            Some(id) => PutBack::To(id.to_string()),
            None => PutBack::Nothing,
        },
        Held::NeverWritten | Held::Unknown => PutBack::Unknown,
        Held::Key(old) => PutBack::To(old.clone()),
    }
}

/// How a run ends, once it has written what it could.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Settle {
    /// Some destination is still behind: both keys stay active, the secret stays encrypted in the
    /// table, and the next run writes only those behind.
    Partial,
    /// Every destination holds the current key: the key being replaced (if any) is deactivated,
    /// and the encrypted secret dropped if there is one (`clear_pending`).
    Done { deactivate: Option<KeyRef>, clear_pending: bool },
}

/// How a run ends with `state` (the table held the current key's secret: `pending`; this run
/// made the key: `made_key`).
pub(super) fn settle(state: &RotationState, spec: &TargetSpec, pending: bool, made_key: bool) -> Settle {
    if !state.behind(spec).is_empty() {
        return Settle::Partial;
    }
    Settle::Done { deactivate: state.retiring.clone(), clear_pending: pending || made_key }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::rotation::SecretNames;

    const HOUR: i64 = 3600;
    /// The run's clock: long after every key below was made.
    const NOW: i64 = 1_000 * HOUR;

    fn spec() -> TargetSpec {
        TargetSpec {
            user_name: "ci-deployer".into(),
            app_id: 42,
            destinations: vec![repo("octo/a"), repo("octo/b")],
            secret_names: SecretNames::default(),
            max_age_hours: 24,
            grace_hours: 2,
            region: None,
        }
    }

    fn repo(r: &str) -> Destination {
        Destination::Repository { repository: r.into() }
    }

    fn key(id: &str, active: bool, created: i64) -> AccessKeyInfo {
        AccessKeyInfo { key_id: id.into(), active, created }
    }

    fn key_ref(id: &str, at: i64) -> KeyRef {
        KeyRef { key_id: id.into(), at }
    }

    /// A state whose current key `id` (made at `at`) every destination of [`spec`] holds.
    fn settled(id: &str, at: i64) -> RotationState {
        let spec = spec();
        let mut state = RotationState { current: Some(key_ref(id, at)), ..Default::default() };
        for d in &spec.destinations {
            let held = DestinationState {
                key_id: Some(id.into()),
                fingerprint: Some(d.fingerprint(&spec)),
                ..Default::default()
            };
            state.destinations.insert(d.id(), held);
        }
        state
    }

    fn delete(id: &str, why: Deletion) -> Step {
        Step::Delete { key_id: id.into(), why }
    }

    fn create(existing: &[&str], retiring: Option<KeyRef>) -> Step {
        Step::Create { existing: existing.iter().map(|s| s.to_string()).collect(), retiring }
    }

    fn write_all() -> Step {
        Step::Write { destinations: spec().destinations, made_key: true }
    }

    /// The plan's state once the actor has done its deletions.
    fn carried_out(plan: &Plan) -> RotationState {
        let mut state = plan.state.clone();
        for step in &plan.steps {
            if let Step::Delete { key_id, why } = step {
                why.forget(&mut state, key_id);
            }
        }
        state
    }

    /// `state` as a run at [`NOW`] carries on from it, when it sorts nothing out.
    fn ran(state: &RotationState) -> RotationState {
        RotationState { last_run: Some(NOW), ..state.clone() }
    }

    #[test]
    fn a_young_key_every_destination_holds_needs_nothing() {
        let plan = plan(&spec(), settled("K", NOW - HOUR), &[key("K", true, NOW - HOUR)], false, false, NOW);
        assert_eq!(plan.steps, []);
        assert_eq!(plan.state.last_run, Some(NOW));
        assert_eq!(plan.state.current, Some(key_ref("K", NOW - HOUR)));
    }

    #[test]
    fn a_target_without_a_key_gets_one_written_everywhere() {
        let plan = plan(&spec(), RotationState::default(), &[], false, false, NOW);
        assert_eq!(plan.steps, [Step::CheckTime, create(&[], None), write_all()]);
    }

    #[test]
    fn a_key_is_due_early_by_up_to_one_run() {
        let max = 24 * HOUR;
        // Fourteen minutes short of its maximum age: due now, not a schedule period later.
        let made = NOW - max + 14 * 60;
        let plan = plan(&spec(), settled("K", made), &[key("K", true, made)], false, false, NOW);
        assert_eq!(plan.steps, [Step::CheckTime, create(&["K"], Some(key_ref("K", made))), write_all()]);
        // Sixteen minutes short: not yet.
        let made = NOW - max + 16 * 60;
        let plan = super::plan(&spec(), settled("K", made), &[key("K", true, made)], false, false, NOW);
        assert_eq!(plan.steps, []);
    }

    #[test]
    fn force_rotates_a_young_key_and_the_active_key_is_the_one_replaced() {
        let made = NOW - HOUR;
        let plan = plan(&spec(), settled("K", made), &[key("K", true, made)], false, true, NOW);
        assert_eq!(plan.steps, [Step::CheckTime, create(&["K"], Some(key_ref("K", made))), write_all()]);
    }

    #[test]
    fn destinations_behind_are_caught_up_with_the_pending_secret() {
        let mut state = settled("K", NOW - HOUR);
        state.destinations.remove("repo:octo/b");
        let keys = [key("K", true, NOW - HOUR)];
        let plan = plan(&spec(), state.clone(), &keys, true, false, NOW);
        assert_eq!(plan.steps, [Step::Open, Step::Write { destinations: vec![repo("octo/b")], made_key: false }]);
        // Without the secret, a new key is made for all of them.
        let plan = super::plan(&spec(), state, &keys, false, false, NOW);
        assert_eq!(plan.steps, [Step::CheckTime, create(&["K"], Some(key_ref("K", NOW - HOUR))), write_all()]);
    }

    #[test]
    fn force_with_destinations_behind_and_the_secret_held_catches_up_and_makes_no_key() {
        let mut state = settled("K", NOW - HOUR);
        state.destinations.remove("repo:octo/b");
        let plan = plan(&spec(), state.clone(), &[key("K", true, NOW - HOUR)], true, true, NOW);
        let steps = vec![Step::Open, Step::Write { destinations: vec![repo("octo/b")], made_key: false }];
        assert_eq!(plan, Plan { state: ran(&state), deactivated_outside: None, steps });
    }

    #[test]
    fn a_destination_written_under_other_names_is_behind() {
        let renamed = TargetSpec { region: Some("eu-west-1".into()), ..spec() };
        let plan = plan(&renamed, settled("K", NOW - HOUR), &[key("K", true, NOW - HOUR)], true, false, NOW);
        assert_eq!(
            plan.steps,
            [Step::Open, Step::Write { destinations: renamed.destinations.clone(), made_key: false }]
        );
    }

    #[test]
    fn keys_iam_no_longer_has_are_forgotten() {
        let mut state = settled("K", NOW - HOUR);
        state.retiring = Some(key_ref("R", 0));
        state.previous = Some(key_ref("P", NOW));
        let plan = plan(&spec(), state, &[], false, false, NOW);
        assert_eq!((plan.state.current, plan.state.retiring, plan.state.previous), (None, None, None));
        assert_eq!(plan.steps, [Step::CheckTime, create(&[], None), write_all()]);
    }

    #[test]
    fn the_key_an_interrupted_run_created_and_never_recorded_is_deleted() {
        let made = NOW - 2 * HOUR;
        let mut state = settled("K", made - 30 * 24 * HOUR);
        state.creating = Some(Creating { at: made, existing: vec!["K".into()] });
        let keys = [key("K", true, made - 30 * 24 * HOUR), key("ORPHAN", true, made + 5)];
        let plan = plan(&spec(), state, &keys, false, false, NOW);
        // Its creation marker goes only once IAM has deleted it.
        assert_eq!(plan.state.creating, Some(Creating { at: made, existing: vec!["K".into()] }));
        assert_eq!(carried_out(&plan).creating, None);
        let replaced = Some(key_ref("K", made - 30 * 24 * HOUR));
        assert_eq!(
            plan.steps,
            [delete("ORPHAN", Deletion::Orphan), Step::CheckTime, create(&["K"], replaced), write_all()]
        );
    }

    #[test]
    fn a_key_made_by_hand_long_after_an_interrupted_run_is_not_an_orphan() {
        let made = NOW - 2 * HOUR;
        let mut state = settled("K", NOW - HOUR);
        state.creating = Some(Creating { at: made, existing: vec!["K".into()] });
        let keys = [key("K", true, NOW - HOUR), key("BYHAND", true, made + 3 * 60)];
        let plan = plan(&spec(), state, &keys, false, false, NOW);
        assert_eq!(plan.steps, []);
    }

    #[test]
    fn two_unrecorded_keys_since_an_interrupted_run_refuse_the_run_and_delete_nothing() {
        let made = NOW - 2 * HOUR;
        let state = RotationState { creating: Some(Creating { at: made, existing: vec![] }), ..Default::default() };
        let keys = [key("A", true, made), key("B", true, made + 60)];
        let plan = plan(&spec(), state, &keys, false, false, NOW);
        match &plan.steps[..] {
            [Step::Refuse(why)] => assert!(why.contains(r#"keys ["A", "B"] were created since an interrupted run"#)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_replaced_key_is_deleted_when_its_grace_period_ends_and_not_before() {
        let mut state = settled("K", NOW - HOUR);
        let keys = [key("OLD", false, 0), key("K", true, NOW - HOUR)];
        // Deactivated two hours ago, to the second: its grace period is over.
        state.previous = Some(key_ref("OLD", NOW - 2 * HOUR));
        let plan = plan(&spec(), state.clone(), &keys, false, false, NOW);
        assert_eq!(plan.steps, [delete("OLD", Deletion::GraceOver)]);
        // It is forgotten only once IAM has deleted it.
        assert_eq!(plan.state.previous, Some(key_ref("OLD", NOW - 2 * HOUR)));
        assert_eq!(carried_out(&plan).previous, None);
        // A second later than that, it is kept.
        state.previous = Some(key_ref("OLD", NOW - 2 * HOUR + 1));
        let plan = super::plan(&spec(), state.clone(), &keys, false, false, NOW);
        assert_eq!((plan.steps, plan.state.previous), (vec![], Some(key_ref("OLD", NOW - 2 * HOUR + 1))));
        // Reactivated by hand: kept too.
        let plan = super::plan(&spec(), state, &[key("OLD", true, 0), key("K", true, NOW - HOUR)], false, false, NOW);
        assert_eq!(plan.steps, []);
    }

    #[test]
    fn a_replaced_key_in_its_grace_period_makes_a_due_rotation_wait() {
        let made = NOW - 30 * HOUR;
        let mut state = settled("K", made);
        state.previous = Some(key_ref("OLD", NOW - HOUR));
        let plan = plan(&spec(), state, &[key("OLD", false, 0), key("K", true, made)], false, false, NOW);
        match &plan.steps[..] {
            [Step::CheckTime, Step::Blocked { why, waiting: true }] => {
                assert!(why.contains("OLD is in its grace period"), "{why}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn two_live_keys_refuse_a_rotation_and_delete_nothing() {
        let made = NOW - 30 * HOUR;
        let plan = plan(&spec(), settled("K", made), &[key("K", true, made), key("X", true, 0)], false, false, NOW);
        match &plan.steps[..] {
            [Step::CheckTime, Step::Blocked { why, waiting: false }] => {
                assert!(why.contains("already has two live access keys"), "{why}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_key_still_retiring_blocks_a_rotation_without_waiting_even_when_inactive() {
        // Deactivated by hand while a destination still needs it, and the secret is gone: a new
        // key is due, and the retiring key is not the rotator's to delete.
        let mut state = settled("K", NOW - HOUR);
        state.retiring = Some(key_ref("R", 0));
        state.destinations.remove("repo:octo/b");
        let plan = plan(&spec(), state.clone(), &[key("R", false, 0), key("K", true, NOW - HOUR)], false, false, NOW);
        let why = "the user already has two live access keys (R still serves destinations that are behind, K is \
                   active); none is deleted. Deactivate the one no longer in use, or wait for the grace period to end";
        let steps = vec![Step::CheckTime, Step::Blocked { why: why.into(), waiting: false }];
        assert_eq!(plan, Plan { state: ran(&state), deactivated_outside: None, steps });
    }

    #[test]
    fn a_current_key_deactivated_outside_the_rotator_makes_room_even_beside_a_key_in_its_grace_period() {
        // Inactive, it is no longer current, retiring nor in a grace period: it never blocks the run.
        let mut state = settled("K", NOW - HOUR);
        state.previous = Some(key_ref("OLD", NOW - HOUR));
        let keys = [key("OLD", false, 0), key("K", false, NOW - HOUR)];
        let plan = plan(&spec(), state.clone(), &keys, false, false, NOW);
        let steps = vec![Step::CheckTime, delete("K", Deletion::Room), create(&["OLD"], None), write_all()];
        let state = RotationState { current: None, ..ran(&state) };
        assert_eq!(plan, Plan { state, deactivated_outside: Some("K".into()), steps });
    }

    #[test]
    fn two_active_keys_without_a_current_one_block_a_new_key_without_waiting() {
        let keys = [key("A", true, 0), key("B", true, 5)];
        let plan = plan(&spec(), RotationState::default(), &keys, false, false, NOW);
        let why = "the user already has two live access keys (A is active, B is active); none is deleted. Deactivate \
                   the one no longer in use, or wait for the grace period to end";
        let steps = vec![Step::CheckTime, Step::Blocked { why: why.into(), waiting: false }];
        assert_eq!(plan, Plan { state: ran(&RotationState::default()), deactivated_outside: None, steps });
    }

    #[test]
    fn an_inactive_key_the_rotator_does_not_know_makes_room() {
        let made = NOW - 30 * HOUR;
        let plan = plan(&spec(), settled("K", made), &[key("X", false, 0), key("K", true, made)], false, false, NOW);
        assert_eq!(
            plan.steps,
            [Step::CheckTime, delete("X", Deletion::Room), create(&["K"], Some(key_ref("K", made))), write_all()]
        );
    }

    #[test]
    fn a_current_key_deactivated_outside_the_rotator_is_replaced_and_makes_room() {
        let made = NOW - HOUR;
        let keys = [key("K", false, made), key("X", true, 0)];
        let plan = plan(&spec(), settled("K", made), &keys, true, false, NOW);
        assert_eq!(plan.deactivated_outside.as_deref(), Some("K"));
        assert_eq!(plan.state.current, None);
        assert_eq!(
            plan.steps,
            [Step::CheckTime, delete("K", Deletion::Room), create(&["X"], Some(key_ref("X", 0))), write_all()]
        );
    }

    #[test]
    fn a_retiring_key_found_inactive_with_nothing_behind_is_in_its_grace_period_from_now() {
        let mut state = settled("K", NOW - HOUR);
        state.retiring = Some(key_ref("R", 0));
        let plan = plan(&spec(), state, &[key("R", false, 0), key("K", true, NOW - HOUR)], false, false, NOW);
        assert_eq!((plan.state.retiring, plan.state.previous), (None, Some(key_ref("R", NOW))));
        assert_eq!(plan.steps, []);
    }

    #[test]
    fn a_new_key_made_while_a_key_is_retiring_replaces_that_key() {
        let mut state = settled("K", NOW - HOUR);
        state.retiring = Some(key_ref("R", 0));
        state.destinations.remove("repo:octo/b");
        // The current key was deactivated outside the rotator while a destination still held the
        // key it replaces: that key stays the one retiring, and the deactivated one makes room.
        let keys = [key("R", true, 5), key("K", false, NOW - HOUR)];
        let plan = plan(&spec(), state, &keys, false, false, NOW);
        assert_eq!(
            plan.steps,
            [Step::CheckTime, delete("K", Deletion::Room), create(&["R"], Some(key_ref("R", 0))), write_all()]
        );
    }

    #[test]
    fn a_run_that_stopped_while_writing_is_forgotten_once_nothing_is_behind() {
        let mut state = settled("K", NOW - HOUR);
        state.writing = Some(NOW - HOUR);
        let plan = plan(&spec(), state.clone(), &[key("K", true, NOW - HOUR)], false, false, NOW);
        assert_eq!(plan.state.writing, None);
        state.destinations.remove("repo:octo/a");
        let plan = super::plan(&spec(), state, &[key("K", true, NOW - HOUR)], true, false, NOW);
        assert_eq!(plan.state.writing, Some(NOW - HOUR), "the destinations behind are not vouched for yet");
    }

    #[test]
    fn a_user_is_managed_only_under_its_exact_name_and_the_allowed_path() {
        let iam = |name: &str, path: &str| IamUser { name: name.into(), arn: String::new(), path: path.into() };
        assert_eq!(user_refusal("ci", &iam("ci", "/appcreds-rotated/team/"), "/appcreds-rotated/"), None);
        let why = user_refusal("ci", &iam("CI", "/appcreds-rotated/"), "/appcreds-rotated/").unwrap();
        assert!(why.contains(r#"which IAM spells "CI""#), "{why}");
        let why = user_refusal("ci", &iam("ci", "/admins/"), "/appcreds-rotated/").unwrap();
        assert!(why.contains(r#"has path "/admins/", outside "/appcreds-rotated/""#), "{why}");
    }

    #[test]
    fn what_a_destination_holds_is_vouched_for_only_by_a_trusted_record_of_the_same_place() {
        let written = |unknown: bool| DestinationState {
            key_id: (!unknown).then(|| "AKIAOLD".to_string()),
            fingerprint: Some("f1".into()),
            unknown,
            ..DestinationState::default()
        };
        assert_eq!(Held::of(Some(&written(false)), "f1", true), Held::Key("AKIAOLD".into()));
        // Never written (no record, or only failures recorded): the key being replaced, if any.
        assert_eq!(Held::of(None, "f1", true), Held::NeverWritten);
        assert_eq!(Held::of(Some(&DestinationState::default()), "f1", true), Held::NeverWritten);
        // A put-back that failed: it may hold the new pair already, or half of it.
        assert_eq!(Held::of(Some(&written(true)), "f1", true), Held::Unknown);
        // Written under other names, or a run before stopped while writing.
        assert_eq!(Held::of(Some(&written(false)), "f2", true), Held::Unknown);
        assert_eq!(Held::of(Some(&written(false)), "f1", false), Held::Unknown);
        assert_eq!(Held::of(None, "f1", false), Held::Unknown);
    }

    #[test]
    fn the_key_id_goes_back_to_the_key_the_destination_held() {
        let old = Held::Key("OLD".into());
        assert_eq!(put_back(&old, true, Some("R"), "NEW"), PutBack::To("OLD".into()));
        assert_eq!(put_back(&old, false, None, "NEW"), PutBack::To("OLD".into()));
    }

    #[test]
    fn a_destination_never_written_gets_the_key_being_replaced_back_only_in_the_run_that_made_the_new_one() {
        assert_eq!(put_back(&Held::NeverWritten, true, Some("R"), "NEW"), PutBack::To("R".into()));
        // Nothing being replaced (or only the new key itself): nothing to put back.
        assert_eq!(put_back(&Held::NeverWritten, true, None, "NEW"), PutBack::Nothing);
        assert_eq!(put_back(&Held::NeverWritten, true, Some("NEW"), "NEW"), PutBack::Nothing);
        // In a later run it may hold the new pair already.
        assert_eq!(put_back(&Held::NeverWritten, false, Some("R"), "NEW"), PutBack::Unknown);
    }

    #[test]
    fn an_unknown_destination_gets_no_key_id_put_back() {
        assert_eq!(put_back(&Held::Unknown, true, Some("R"), "NEW"), PutBack::Unknown);
        assert_eq!(put_back(&Held::Unknown, false, None, "NEW"), PutBack::Unknown);
    }

    #[test]
    fn a_run_retires_the_old_key_only_when_every_destination_holds_the_new_one() {
        let mut state = settled("K", NOW);
        state.retiring = Some(key_ref("R", 0));
        assert_eq!(
            settle(&state, &spec(), false, true),
            Settle::Done { deactivate: Some(key_ref("R", 0)), clear_pending: true }
        );
        // Caught up with the pending secret: it is dropped too.
        assert_eq!(
            settle(&state, &spec(), true, false),
            Settle::Done { deactivate: Some(key_ref("R", 0)), clear_pending: true }
        );
        state.retiring = None;
        assert_eq!(settle(&state, &spec(), false, false), Settle::Done { deactivate: None, clear_pending: false });
        state.destinations.remove("repo:octo/b");
        assert_eq!(settle(&state, &spec(), true, true), Settle::Partial);
    }
}
