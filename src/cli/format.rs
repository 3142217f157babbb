//! Output formatting that mirrors Apache ZooKeeper's `zkCli.sh`: stat blocks, ACL permission
//! strings and Java's `Date.toString()` rendering of timestamps (in UTC).

use std::fmt::Write as _;

use zookeeper_client::{Acl, Permission, Stat};

/// Renders a stat the way zkCli's `StatPrinter` does, one `name = value` line each.
pub fn stat_text(stat: &Stat) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(s, "cZxid = 0x{:x}", stat.czxid);
    let _ = writeln!(s, "ctime = {}", java_date(stat.ctime));
    let _ = writeln!(s, "mZxid = 0x{:x}", stat.mzxid);
    let _ = writeln!(s, "mtime = {}", java_date(stat.mtime));
    let _ = writeln!(s, "pZxid = 0x{:x}", stat.pzxid);
    let _ = writeln!(s, "cversion = {}", stat.cversion);
    let _ = writeln!(s, "dataVersion = {}", stat.version);
    let _ = writeln!(s, "aclVersion = {}", stat.aversion);
    let _ = writeln!(s, "ephemeralOwner = 0x{:x}", stat.ephemeral_owner);
    let _ = writeln!(s, "dataLength = {}", stat.data_length);
    let _ = writeln!(s, "numChildren = {}", stat.num_children);
    s
}

/// Permission letters in zkCli's order (`cdrwa`).
pub fn perms_text(p: Permission) -> String {
    [
        (Permission::CREATE, 'c'),
        (Permission::DELETE, 'd'),
        (Permission::READ, 'r'),
        (Permission::WRITE, 'w'),
        (Permission::ADMIN, 'a'),
    ]
    .into_iter()
    .filter(|(bit, _)| p.has(*bit))
    .map(|(_, c)| c)
    .collect()
}

/// Renders one ACL entry as zkCli's `getAcl` does: `'scheme,'id` then `: perms`.
pub fn acl_text(acl: &Acl) -> String {
    format!(
        "'{},'{}\n: {}\n",
        acl.scheme(),
        acl.id(),
        perms_text(acl.permission())
    )
}

/// Milliseconds since the epoch as Java's `Date.toString()` in UTC,
/// e.g. `Tue Nov 24 21:44:40 UTC 2026`.
pub fn java_date(ms: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // 1970-01-01 was a Thursday; rem_euclid keeps both indexes in range.
    let dow = DAYS[days.rem_euclid(7) as usize];
    let mon = MONTHS[(month - 1).rem_euclid(12) as usize];
    format!(
        "{dow} {mon} {day:02} {:02}:{:02}:{:02} UTC {year}",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_date_matches_java() {
        assert_eq!(java_date(0), "Thu Jan 01 00:00:00 UTC 1970");
        assert_eq!(java_date(1_795_556_680_000), "Tue Nov 24 21:44:40 UTC 2026");
    }

    #[test]
    fn perms_in_zkcli_order() {
        assert_eq!(perms_text(Permission::ALL), "cdrwa");
        assert_eq!(perms_text(Permission::READ | Permission::ADMIN), "ra");
    }
}
