//! The flood daemon's configuration file: any bytes give a configuration whose references
//! all resolve, or an error with a line and column, never a panic.
#![no_main]

use std::collections::BTreeSet;

use flotilla_core::flood::config::{FloodConfig, MAX_GROUPS, MAX_NAME, MAX_SITES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let config = match FloodConfig::parse_bytes(data) {
        Ok(config) => config,
        Err(e) => {
            assert!(e.pos.line >= 1 && e.pos.col >= 1, "{e}");
            return;
        }
    };
    let sites: BTreeSet<&str> = config.sites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(sites.len(), config.sites.len(), "site names are unique");
    assert!(config.sites.len() <= MAX_SITES);
    let groups: BTreeSet<&str> = config.groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(groups.len(), config.groups.len(), "group names are unique");
    assert!(config.groups.len() <= MAX_GROUPS);
    for name in sites.iter().chain(&groups) {
        assert!((1..=MAX_NAME).contains(&name.len()), "{name:?}");
    }
    for s in &config.sites {
        assert!(s.hostname.is_some() || s.inet_address.is_some());
        assert!(s.client_port > 0 && s.data_port > 0);
        assert!(config.site(&s.name).is_some_and(|found| found == s));
    }
    for g in &config.groups {
        assert!(
            sites.contains(g.master.as_str()),
            "master {} is a site",
            g.master
        );
        assert!(g.sites.contains(&g.master), "the master is a member");
        let members: BTreeSet<&str> = g.sites.iter().map(String::as_str).collect();
        assert_eq!(members.len(), g.sites.len(), "no site is listed twice");
        assert!(members.is_subset(&sites), "every member is a site");
        assert!((1..=16).contains(&g.connectivity));
        for s in &g.sites {
            assert!(config.groups_of(s).any(|h| h.name == g.name));
        }
    }
    // Whatever the host names, a lookup answers without panicking.
    for s in &config.sites {
        if let Some(h) = &s.hostname {
            let _ = config.site_for_host(h);
        }
    }
});
