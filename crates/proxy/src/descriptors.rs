//! The open-file limit, raised at start to what `max_connections` needs: a service's soft
//! limit is often 1,024 (systemd's default), which would refuse connections (`accept`
//! failing with EMFILE) long before `max_connections`, where HAProxy sizes its own limit from
//! `maxconn`.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Descriptors one client connection holds: its socket, the duplicate `crate::room` keeps,
/// and a backend connection. An HTTP/2 connection with several streams in flight holds one
/// backend connection per stream: the limit is what the usual load needs, not a bound (a
/// cap on backend connections per client connection is still to come).
const PER_CONNECTION: u64 = 3;
/// Listeners, certificates and routes being read, the access log, the runtime's own.
const BESIDES: u64 = 256;

/// The descriptors `max_connections` needs.
pub(crate) fn needed(max_connections: usize) -> u64 {
    u64::try_from(max_connections)
        .unwrap_or(u64::MAX)
        .saturating_mul(PER_CONNECTION)
        .saturating_add(BESIDES)
}

/// Raises the soft limit to the hard one, or to what is needed if less; says when even the
/// hard limit is short (the connections beyond it are refused) and how to raise it.
pub(crate) fn raise_for(max_connections: usize) {
    let want = needed(max_connections);
    let limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum; // None: unlimited
    let target = hard.map_or(want, |h| h.min(want));
    if limit.current.is_some_and(|soft| soft < target) {
        let raised = Rlimit {
            current: Some(target),
            maximum: hard,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!("the open-file limit could not be raised to {target}: {e}");
        }
    }
    if let Some(h) = hard.filter(|h| *h < want) {
        tracing::warn!(
            "max_connections {max_connections} needs about {want} open files, the hard limit is {h}: \
             connections beyond it are refused (raise LimitNOFILE= in the service's unit)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_connection_counts_three_descriptors_and_the_sum_never_overflows() {
        assert_eq!(needed(20_000), 60_256);
        assert_eq!(needed(usize::MAX), u64::MAX);
    }
}
