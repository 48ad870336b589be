//! The documents stay true: README shows the example configuration exactly as shipped,
//! and that file is a valid configuration.

use std::path::Path;

use flotilla_core::ship::tree::ConfigTree;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn readme_shows_the_example_configuration_verbatim() {
    let conf = read("examples/ship.conf");
    let readme = read("README.md");
    assert!(
        readme.contains(conf.trim_end()),
        "README.md no longer shows examples/ship.conf as it is"
    );
    let tree = ConfigTree::parse(&conf).expect("the example configuration parses");
    assert_eq!(tree.get("render/port").unwrap(), "7000");
}

#[test]
fn readme_shows_the_cluster_configuration_verbatim() {
    let conf = read("examples/cluster.conf");
    let readme = read("README.md");
    assert!(
        readme.contains(conf.trim_end()),
        "README.md no longer shows examples/cluster.conf as it is"
    );
    let cfg = flotilla_core::membership::config_file::parse(&conf)
        .expect("the example cluster configuration parses");
    assert_eq!(cfg.daemons.len(), 5);
    assert_eq!(cfg.daemons[2].1.to_string(), "127.0.0.1:4803");
}
