//! Builder options that change how pages are backed: `populate` faults them in, `lock` pins
//! them in RAM. Checked through the kernel's own accounting of our mappings
//! (`/proc/self/smaps`).

use shmlane_segment::Segment;

const SIZE: u64 = 4 << 20;
const SIZE_KB: u64 = SIZE / 1024;

/// Every mapping of `path` in this process, as `(Rss kB, Locked kB)`.
fn mappings_of(path: &str) -> Vec<(u64, u64)> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let lines: Vec<&str> = smaps.lines().collect();
    let field = |rest: &[&str], key: &str| -> u64 {
        let line = rest.iter().find(|l| l.starts_with(key)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    (0..lines.len())
        .filter(|&i| lines[i].ends_with(path))
        .map(|i| (field(&lines[i..], "Rss:"), field(&lines[i..], "Locked:")))
        .collect()
}

fn path_of(segment: &Segment) -> String {
    segment.path().unwrap().to_str().unwrap().to_owned()
}

fn name(tag: &str) -> String {
    format!("test.options.{tag}.{}", std::process::id())
}

#[test]
fn populate_at_create_faults_every_page_in() {
    let segment = Segment::builder(name("populate")).size(SIZE).populate(true).create().unwrap();
    assert_eq!(mappings_of(&path_of(&segment)), [(SIZE_KB, 0)]);
}

#[test]
fn populate_at_open_faults_the_openers_mapping_in() {
    let creator = Segment::builder(name("lazy")).size(SIZE).create().unwrap();
    let path = path_of(&creator);
    let [(lazy_rss, _)] = mappings_of(&path)[..] else { panic!("one mapping expected") };
    // Without populate only the header page was touched.
    assert!(lazy_rss < SIZE_KB / 2, "lazy mapping has {lazy_rss} kB resident");
    let opener = Segment::builder(name("lazy")).populate(true).open().unwrap();
    let mut rss: Vec<u64> = mappings_of(&path).iter().map(|m| m.0).collect();
    rss.sort();
    assert_eq!(rss, [lazy_rss, SIZE_KB]);
    drop(opener);
}

#[test]
fn lock_pins_pages_or_reports_that_it_could_not() {
    let segment = Segment::builder(name("lock")).size(SIZE).lock(true).create().unwrap();
    let [(_, locked)] = mappings_of(&path_of(&segment))[..] else { panic!("one mapping") };
    if segment.is_locked() {
        assert_eq!(locked, SIZE_KB);
    } else {
        // Over RLIMIT_MEMLOCK: the segment works unlocked, and says so.
        assert_eq!(locked, 0);
        assert_ne!(rustix::process::geteuid().as_raw(), 0, "root may always lock");
    }
}
