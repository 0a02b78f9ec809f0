//! Socket tables read without TIME_WAIT (issue 14): most live readings do
//! not ask the kernel for TIME_WAIT sockets, and the engine keeps each
//! destination's TIME_WAIT from the last full table and the local closes
//! since, taking only the open sockets from such a table.

mod engine_support;
use engine_support::*;

use portwatch::engine::{Config, Engine};
use portwatch::event::{ConnClose, Event};
use portwatch::input::{Input, SockState, SocketEntry, SocketTable};
use portwatch::tracefile::{Reader, Writer};

const HOST_NS: u32 = 4026531840;
const OTHER_NS: u32 = 4026532999;
const DST: &str = "127.0.0.1:7000";

fn est(sport: u16) -> SocketEntry {
    SocketEntry {
        inode: 1000 + u32::from(sport),
        ..socket_to_7000(SockState::Established, sport, 0)
    }
}

fn table(ts_ns: u64, netns: u32, entries: Vec<SocketEntry>, without_time_wait: bool) -> Input {
    Input::Sockets(SocketTable {
        ts_ns,
        netns,
        entries,
        without_time_wait,
    })
}

/// A connection from local port `sport` in namespace `netns`.
fn conn_from(netns: u32, sport: u16, start_ns: u64, end_ns: u64, local: bool) -> Input {
    match conn(
        task(9, "client", 0),
        DST,
        start_ns,
        end_ns - start_ns,
        local,
    ) {
        Input::Event(Event::Close(c)) => {
            Input::Event(Event::Close(ConnClose { netns, sport, ..c }))
        }
        _ => unreachable!(),
    }
}

/// (TIME_WAIT, open ports, held ports) of the destination in `netns`.
fn counts(e: &Engine, now_ns: u64, netns: u32) -> (u64, u64, u64) {
    let m = e.model(now_ns);
    let d = m
        .destinations
        .iter()
        .find(|d| d.netns.unwrap_or(HOST_NS) == netns && d.dport == 7000)
        .unwrap_or_else(|| panic!("no destination in {netns}: {:?}", m.destinations));
    assert!(d.from_socket_table, "{d:?}");
    (d.stats.time_wait, d.open_ports, d.held_ports)
}

/// A full table at 1 s (5 TIME_WAIT, 1 open), ten local closes at 2.0-2.9 s,
/// then a table at 4 s that says `without_time_wait` as given, with two
/// open sockets.
fn full_closes_then_table(without_time_wait: bool) -> Vec<Input> {
    let mut v = vec![
        host(40000, 40999),
        table(
            S,
            HOST_NS,
            (0..5)
                .map(|i| time_wait_to_7000(40000 + i, 50_000))
                .chain([est(41000)])
                .collect(),
            false,
        ),
    ];
    for i in 0..10u16 {
        let end = 2 * S + u64::from(i) * 100 * MS;
        v.push(conn_from(HOST_NS, 40010 + i, end - 5 * MS, end, true));
    }
    v.push(table(
        4 * S,
        HOST_NS,
        vec![est(41000), est(41001)],
        without_time_wait,
    ));
    v
}

fn run(inputs: &[Input]) -> Engine {
    let mut e = Engine::new(Config::default());
    for i in inputs {
        e.apply(i);
    }
    e
}

#[test]
fn a_table_without_time_wait_keeps_the_time_wait_of_the_last_full_one_and_the_closes_since() {
    let e = run(&full_closes_then_table(true));
    // 5 from the full table, 10 local closes since; the two open sockets
    // from the new table.
    assert_eq!(counts(&e, 5 * S, HOST_NS), (15, 2, 17));
    // The same table read as a full one would say there is no TIME_WAIT
    // at all: the mark is what keeps them.
    let e = run(&full_closes_then_table(false));
    assert_eq!(counts(&e, 5 * S, HOST_NS), (0, 2, 2));
}

#[test]
fn closes_after_a_table_without_time_wait_add_to_what_it_kept() {
    let mut inputs = full_closes_then_table(true);
    // Closed after the table at 4 s: one that was open in it (41000), one
    // that started after it.
    inputs.push(conn_from(HOST_NS, 41000, S / 2, 4 * S + 500 * MS, true));
    inputs.push(conn_from(
        HOST_NS,
        41002,
        4 * S + 600 * MS,
        4 * S + 700 * MS,
        true,
    ));
    let e = run(&inputs);
    assert_eq!(counts(&e, 5 * S, HOST_NS), (17, 1, 18));
    // TIME_WAIT of the full table expires when it said (50 s after 1 s),
    // the closes' 60 s after them.
    assert_eq!(counts(&e, 52 * S, HOST_NS).0, 12);
}

#[test]
fn a_full_table_corrects_the_time_wait_kept_across_tables_without_it() {
    let mut inputs = full_closes_then_table(true);
    // The kernel knew better (tcp_tw_reuse took some over, or events were
    // lost): the next full table has 3 TIME_WAIT and the two open sockets.
    inputs.push(table(
        6 * S,
        HOST_NS,
        (0..3)
            .map(|i| time_wait_to_7000(40010 + i, 55_000))
            .chain([est(41000), est(41001)])
            .collect(),
        false,
    ));
    let e = run(&inputs);
    assert_eq!(counts(&e, 6 * S, HOST_NS), (3, 2, 5));
    // And closes after it count on top of it, not of the kept ones.
    let mut e = e;
    e.apply(&conn_from(HOST_NS, 41001, S, 7 * S, true));
    assert_eq!(counts(&e, 8 * S, HOST_NS), (4, 1, 5));
}

/// A namespace's table is read on another thread, so it can arrive after
/// closes newer than itself. Full table at 1 s: 5 TIME_WAIT and three open
/// sockets; those three close at 2.0-2.2 s; four more start at 2.3 s and
/// close at 3.1-3.4 s; the table read at 3.0 s arrives after all of them.
/// The dump saw two of the four still open and reached the other two after
/// they closed (in TIME_WAIT: a full table lists them, one without
/// TIME_WAIT does not).
fn late_table(without_time_wait: bool) -> Vec<Input> {
    let mut v = vec![
        host(40000, 40999),
        // Another namespace's table corrects the rows its events made (it
        // adds none): a connection the peer closed makes this one.
        conn_from(OTHER_NS, 40030, S / 4, S / 2, false),
        table(
            S,
            OTHER_NS,
            (0..5)
                .map(|i| time_wait_to_7000(40000 + i, 59_000))
                .chain((0..3).map(|i| est(40010 + i)))
                .collect(),
            false,
        ),
    ];
    for i in 0..3u16 {
        v.push(conn_from(
            OTHER_NS,
            40010 + i,
            S / 2,
            2 * S + u64::from(i) * 100 * MS,
            true,
        ));
    }
    for i in 0..4u16 {
        v.push(conn_from(
            OTHER_NS,
            40020 + i,
            2 * S + 300 * MS,
            3 * S + 100 * MS * u64::from(i + 1),
            true,
        ));
    }
    let mut entries = vec![est(40020), est(40021)];
    if !without_time_wait {
        entries.extend((0..5).map(|i| time_wait_to_7000(40000 + i, 57_000)));
        entries.extend((0..3).map(|i| time_wait_to_7000(40010 + i, 59_000)));
        // The dump reached this one after it closed.
        entries.push(time_wait_to_7000(40022, 60_000));
    }
    v.push(table(3 * S, OTHER_NS, entries, without_time_wait));
    v
}

#[test]
fn a_late_table_and_the_closes_applied_before_it_are_counted_once_with_or_without_time_wait() {
    for without_time_wait in [false, true] {
        let e = run(&late_table(without_time_wait));
        // TIME_WAIT: the full table's 5, the three that closed after it,
        // the four closed after the late table's time: 12 either way.
        // Open: the late table's two, both closed since.
        assert_eq!(
            counts(&e, 4 * S, OTHER_NS),
            (12, 0, 12),
            "without_time_wait {without_time_wait}"
        );
    }
}

#[test]
fn the_first_table_of_a_namespace_without_time_wait_counts_only_closes_after_it() {
    // Not what portwatch reads (a namespace's first table is full), but a
    // filtered trace or a failed first reading can start so: TIME_WAIT is
    // then what the closes after it leave, never negative or doubled.
    let mut inputs = vec![
        host(40000, 40999),
        conn_from(OTHER_NS, 40001, S, 2 * S, true),
    ];
    inputs.push(table(3 * S, OTHER_NS, vec![est(40005)], true));
    inputs.push(conn_from(OTHER_NS, 40002, 3 * S + 100 * MS, 4 * S, true));
    let e = run(&inputs);
    assert_eq!(counts(&e, 5 * S, OTHER_NS), (1, 1, 2));
}

/// Live and replayed models agree: the stream the live source hands the
/// engine, recorded and read back, builds the same model, tables with and
/// without TIME_WAIT alike.
#[test]
fn replay_of_tables_without_time_wait_gives_the_live_model() {
    let mut live = late_table(true);
    live.extend(
        full_closes_then_table(true)
            .into_iter()
            .skip(1)
            .map(|i| match i {
                Input::Sockets(t) => Input::Sockets(SocketTable {
                    ts_ns: t.ts_ns + 4 * S,
                    ..t
                }),
                Input::Event(Event::Close(c)) => Input::Event(Event::Close(ConnClose {
                    start_ns: c.start_ns + 4 * S,
                    end_ns: c.end_ns + 4 * S,
                    ..c
                })),
                other => other,
            }),
    );
    live.push(tick(9 * S));
    live.push(table(9 * S, OTHER_NS, vec![est(40030)], true));
    live.push(tick(10 * S));
    let mut w = Writer::new(Vec::new()).unwrap();
    for (n, i) in live.iter().enumerate() {
        w.append(i).unwrap();
        if n % 5 == 4 {
            w.flush().unwrap();
        }
    }
    let bytes = w.finish().unwrap();
    let replayed: Vec<Input> = Reader::new(&bytes[..])
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(replayed, live);
    assert!(
        replayed
            .iter()
            .filter(|i| matches!(i, Input::Sockets(t) if t.without_time_wait))
            .count()
            >= 3
    );
    let (a, b) = (run(&live), run(&replayed));
    for now in [5 * S, 9 * S, 10 * S, 70 * S] {
        assert_eq!(a.model(now), b.model(now), "at {now}");
    }
    assert_eq!(counts(&b, 10 * S, HOST_NS), (15, 2, 17));
}
