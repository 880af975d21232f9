//! What the data directory says about the role PostgreSQL last ran in
//! (`was_primary`, docs/ha.md §8).

use super::PgRole;

/// Whether an initialised data directory last ran as a primary.
///
/// * PostgreSQL answered: its `role` settles it.
/// * Otherwise pg_control's state does (`control_says_primary`: in
///   production, shut down, shutting down or in crash recovery), except for
///   a base backup whose recovery never began (`unstarted_base_backup`,
///   consulted only then): its control file carries the source's state, yet
///   it is a fresh clone whose first start failed, a replica to start as one.
pub fn was_primary(
    role: Option<PgRole>,
    control_says_primary: bool,
    unstarted_base_backup: impl FnOnce() -> bool,
) -> bool {
    match role {
        Some(role) => role == PgRole::Primary,
        None => control_says_primary && !unstarted_base_backup(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answering_postgres_settles_it() {
        let never = || panic!("not consulted");
        assert!(was_primary(Some(PgRole::Primary), false, never));
        assert!(!was_primary(Some(PgRole::Replica), true, never));
    }

    #[test]
    fn otherwise_pg_control_says() {
        assert!(was_primary(None, true, || false), "crashed primary");
        assert!(
            !was_primary(None, false, || panic!("not consulted")),
            "standby"
        );
    }

    #[test]
    fn an_unstarted_base_backup_is_no_crashed_primary() {
        assert!(!was_primary(None, true, || true));
    }
}
