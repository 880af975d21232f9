//! Key names under the cluster prefix, as Patroni lays them out
//! (docs/dcs.md, "Paths").

pub const LEADER: &str = "leader";
pub const MEMBERS: &str = "members/";
pub const CONFIG: &str = "config";
pub const INITIALIZE: &str = "initialize";
pub const STATUS: &str = "status";
pub const OPTIME_LEADER: &str = "optime/leader";
pub const FAILOVER: &str = "failover";
pub const SYNC: &str = "sync";
pub const HISTORY: &str = "history";
pub const FAILSAFE: &str = "failsafe";

/// `/<namespace>/<scope>` with runs of `/` collapsed and no trailing slash.
pub fn cluster_prefix(namespace: &str, scope: &str) -> String {
    let joined = format!("/{namespace}/{scope}");
    let mut out = String::with_capacity(joined.len());
    let mut last_slash = false;
    for c in joined.chars() {
        if c == '/' {
            if !last_slash {
                out.push(c);
            }
            last_slash = true;
        } else {
            out.push(c);
            last_slash = false;
        }
    }
    while out.len() > 1 && out.ends_with('/') {
        out.pop();
    }
    out
}

/// Full path of a key relative to the cluster prefix.
pub fn path(prefix: &str, key: &str) -> String {
    format!("{prefix}/{key}")
}

/// `members/<name>` for one member.
pub fn member(name: &str) -> String {
    format!("{MEMBERS}{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_collapses_slashes() {
        assert_eq!(cluster_prefix("/service", "batman"), "/service/batman");
        assert_eq!(cluster_prefix("/service/", "batman"), "/service/batman");
        assert_eq!(cluster_prefix("service", "batman"), "/service/batman");
        assert_eq!(cluster_prefix("//a//", "b/"), "/a/b");
    }

    #[test]
    fn key_paths() {
        assert_eq!(path("/service/b", LEADER), "/service/b/leader");
        assert_eq!(path("/service/b", &member("n1")), "/service/b/members/n1");
    }
}
