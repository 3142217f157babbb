//! zkCli's command language: splitting a line into words (with zkCli's quoting), and parsing
//! words into a [`Cmd`] with its options, plus ACL specs (`scheme:id:perms,...`).
//!
//! Pure and unit-tested; executing a command is `shell.rs`'s job. Option letters, argument
//! counts and usage lines follow Apache ZooKeeper 3.9's `zkCli.sh`.

use super::CliError;

/// Every command name the shell knows, for `help` and tab completion.
pub const COMMAND_NAMES: &[&str] = &[
    "addWatch",
    "addauth",
    "close",
    "config",
    "connect",
    "create",
    "delete",
    "deleteall",
    "get",
    "getAcl",
    "getAllChildrenNumber",
    "getEphemerals",
    "help",
    "history",
    "ls",
    "printwatches",
    "quit",
    "redo",
    "removewatches",
    "set",
    "setAcl",
    "stat",
    "sync",
    "version",
    "whoami",
];

/// zkCli's `help` text (and what an unknown command prints).
pub const USAGE: &str = "ZooKeeper -server host:port[,host:port...][/chroot] [-timeout ms] [-r] cmd args\n\
\taddWatch [-m mode] path # optional mode is one of [PERSISTENT, PERSISTENT_RECURSIVE] - default is PERSISTENT_RECURSIVE\n\
\taddauth scheme auth\n\
\tclose \n\
\tconfig [-c] [-w] [-s]\n\
\tconnect host:port\n\
\tcreate [-s] [-e] [-c] [-t ttl] path [data] [acl]\n\
\tdelete [-v version] path\n\
\tdeleteall path\n\
\tget [-s] [-w] path\n\
\tgetAcl [-s] path\n\
\tgetAllChildrenNumber path\n\
\tgetEphemerals path\n\
\thistory \n\
\tls [-s] [-w] [-R] path\n\
\tprintwatches on|off\n\
\tquit \n\
\tredo cmdno\n\
\tremovewatches path [-c|-d|-a] [-l]\n\
\tset [-s] [-v version] path data\n\
\tsetAcl [-s] [-v version] [-R] path acl\n\
\tstat [-w] path\n\
\tsync path\n\
\tversion \n\
\twhoami \n\
Recipes (corral only):\n\
\tlock path -- command [args...]\n\
\telect path name\n\
\twatch path [-R]\n\
\tregister path name [data]";

const ADD_WATCH_USAGE: &str = "addWatch [-m mode] path # optional mode is one of [PERSISTENT, PERSISTENT_RECURSIVE] - default is PERSISTENT_RECURSIVE";

/// Which kind of watch `removewatches` removes (`-c`, `-d`, `-a`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchKind {
    Children,
    Data,
    Any,
}

/// `addWatch -m` modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PersistentMode {
    Persistent,
    Recursive,
}

/// One ACL entry as typed: `scheme:id:perms`. The id may itself contain colons
/// (`digest:user:hash`, `ip:10.0.0.0/8`): the scheme ends at the first colon, the permissions
/// start after the last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclSpec {
    pub scheme: String,
    pub id: String,
    /// ZooKeeper permission bits (read 1, write 2, create 4, delete 8, admin 16).
    pub perms: u32,
}

/// One parsed command with its options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cmd {
    Ls {
        stat: bool,
        watch: bool,
        recursive: bool,
        path: String,
    },
    Create {
        seq: bool,
        eph: bool,
        container: bool,
        ttl_ms: Option<i64>,
        path: String,
        data: Option<String>,
        acl: Option<Vec<AclSpec>>,
    },
    Get {
        stat: bool,
        watch: bool,
        path: String,
    },
    Set {
        stat: bool,
        version: Option<i32>,
        path: String,
        data: String,
    },
    Stat {
        watch: bool,
        path: String,
    },
    Delete {
        version: Option<i32>,
        path: String,
    },
    DeleteAll {
        path: String,
    },
    GetAcl {
        stat: bool,
        path: String,
    },
    SetAcl {
        stat: bool,
        version: Option<i32>,
        recursive: bool,
        path: String,
        acl: Vec<AclSpec>,
    },
    Sync {
        path: String,
    },
    WhoAmI,
    AddAuth {
        scheme: String,
        auth: String,
    },
    AddWatch {
        mode: PersistentMode,
        path: String,
    },
    RemoveWatches {
        path: String,
        kind: WatchKind,
        local: bool,
    },
    GetEphemerals {
        path: String,
    },
    GetAllChildrenNumber {
        path: String,
    },
    Config {
        client: bool,
        watch: bool,
        stat: bool,
    },
    Connect {
        server: String,
    },
    Close,
    History,
    Redo {
        index: i64,
    },
    PrintWatches {
        on: Option<bool>,
    },
    Version,
    Help,
    Quit,
}

impl Cmd {
    /// The znode path this command works on, if any.
    pub fn path(&self) -> Option<&str> {
        match self {
            Cmd::Ls { path, .. }
            | Cmd::Create { path, .. }
            | Cmd::Get { path, .. }
            | Cmd::Set { path, .. }
            | Cmd::Stat { path, .. }
            | Cmd::Delete { path, .. }
            | Cmd::DeleteAll { path }
            | Cmd::GetAcl { path, .. }
            | Cmd::SetAcl { path, .. }
            | Cmd::Sync { path }
            | Cmd::AddWatch { path, .. }
            | Cmd::RemoveWatches { path, .. }
            | Cmd::GetEphemerals { path }
            | Cmd::GetAllChildrenNumber { path } => Some(path),
            _ => None,
        }
    }
}

fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

/// Splits a line into words as zkCli does: whitespace separates words, and a word that starts
/// with `"` or `'` runs to the matching quote (which is dropped), spaces included.
pub fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else {
            return words;
        };
        let mut word = String::new();
        if first == '"' || first == '\'' {
            chars.next();
            for c in chars.by_ref() {
                if c == first {
                    break;
                }
                word.push(c);
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        words.push(word);
    }
}

/// A command's words split into flags (with their values) and positionals.
struct Parsed {
    flags: Vec<char>,
    values: Vec<(char, String)>,
    pos: Vec<String>,
}

/// `flags` lists the boolean flags; `valued` those taking a value. A word that looks like an
/// unknown option is an error until the first positional (after it, `-1` may be data).
fn split_opts(
    cmd: &str,
    words: &[String],
    flags: &[char],
    valued: &[char],
) -> Result<Parsed, CliError> {
    let mut p = Parsed {
        flags: vec![],
        values: vec![],
        pos: vec![],
    };
    let mut it = words.iter();
    while let Some(w) = it.next() {
        let mut chars = w.chars();
        match (chars.next(), chars.next(), chars.next()) {
            (Some('-'), Some(c), None) if flags.contains(&c) => p.flags.push(c),
            (Some('-'), Some(c), None) if valued.contains(&c) => {
                let v = it
                    .next()
                    .ok_or_else(|| usage(format!("{cmd}: option -{c} needs a value")))?;
                p.values.push((c, v.clone()));
            }
            (Some('-'), Some(c), _) if !c.is_ascii_digit() && p.pos.is_empty() => {
                return Err(usage(format!("{cmd}: unknown option {w}")));
            }
            _ => p.pos.push(w.clone()),
        }
    }
    Ok(p)
}

impl Parsed {
    fn has(&self, c: char) -> bool {
        self.flags.contains(&c)
    }
    fn value(&self, c: char) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(k, _)| *k == c)
            .map(|(_, v)| v.as_str())
    }
    fn version(&self) -> Result<Option<i32>, CliError> {
        self.value('v')
            .map(|v| {
                v.parse::<i32>()
                    .map_err(|_| usage(format!("version {v:?} is not a number")))
            })
            .transpose()
    }
    /// Between `min` and `max` positionals.
    fn positionals(&self, cmd: &str, min: usize, max: usize, syntax: &str) -> Result<(), CliError> {
        if self.pos.len() < min || self.pos.len() > max {
            return Err(usage(format!(
                "{cmd}: wrong number of arguments\nusage: {syntax}"
            )));
        }
        Ok(())
    }
    fn path(&self) -> String {
        self.pos.first().cloned().unwrap_or_default()
    }
}

/// Parses `scheme:id:perms[,scheme:id:perms...]`.
pub fn parse_acl(text: &str) -> Result<Vec<AclSpec>, CliError> {
    let mut out = Vec::new();
    for entry in text.split(',') {
        let (Some(first), Some(last)) = (entry.find(':'), entry.rfind(':')) else {
            return Err(usage(format!(
                "{entry} does not have the form scheme:id:perm"
            )));
        };
        if first == last {
            return Err(usage(format!(
                "{entry} does not have the form scheme:id:perm"
            )));
        }
        let mut perms = 0;
        for c in entry[last + 1..].chars() {
            perms |= match c {
                'r' => 1,
                'w' => 2,
                'c' => 4,
                'd' => 8,
                'a' => 16,
                other => return Err(usage(format!("Unknown perm type: {other}"))),
            };
        }
        out.push(AclSpec {
            scheme: entry[..first].to_string(),
            id: entry[first + 1..last].to_string(),
            perms,
        });
    }
    Ok(out)
}

/// Parses one command line's words (the first is the command name).
pub fn parse_words(words: &[String]) -> Result<Cmd, CliError> {
    let (name, words) = words.split_first().ok_or_else(|| usage(USAGE))?;
    parse_cmd(name, words)
}

/// Parses a command given its name and the words after it.
pub fn parse_cmd(name: &str, words: &[String]) -> Result<Cmd, CliError> {
    let cmd = match name {
        "ls" => {
            let p = split_opts(name, words, &['s', 'R', 'w'], &[])?;
            p.positionals(name, 1, 1, "ls [-s] [-w] [-R] path")?;
            Cmd::Ls {
                stat: p.has('s'),
                watch: p.has('w'),
                recursive: p.has('R'),
                path: p.path(),
            }
        }
        "create" => {
            let syntax = "create [-s] [-e] [-c] [-t ttl] path [data] [acl]";
            let p = split_opts(name, words, &['s', 'e', 'c'], &['t'])?;
            p.positionals(name, 1, 3, syntax)?;
            let ttl_ms = p
                .value('t')
                .map(|t| {
                    t.parse::<i64>()
                        .map_err(|_| usage(format!("ttl {t:?} is not a number")))
                })
                .transpose()?;
            Cmd::Create {
                seq: p.has('s'),
                eph: p.has('e'),
                container: p.has('c'),
                ttl_ms,
                path: p.path(),
                data: p.pos.get(1).cloned(),
                acl: p.pos.get(2).map(|a| parse_acl(a)).transpose()?,
            }
        }
        "get" => {
            let p = split_opts(name, words, &['s', 'w'], &[])?;
            p.positionals(name, 1, 1, "get [-s] [-w] path")?;
            Cmd::Get {
                stat: p.has('s'),
                watch: p.has('w'),
                path: p.path(),
            }
        }
        "set" => {
            let p = split_opts(name, words, &['s'], &['v'])?;
            p.positionals(name, 2, 2, "set [-s] [-v version] path data")?;
            Cmd::Set {
                stat: p.has('s'),
                version: p.version()?,
                path: p.path(),
                data: p.pos[1].clone(),
            }
        }
        "stat" => {
            let p = split_opts(name, words, &['w'], &[])?;
            p.positionals(name, 1, 1, "stat [-w] path")?;
            Cmd::Stat {
                watch: p.has('w'),
                path: p.path(),
            }
        }
        "delete" => {
            let p = split_opts(name, words, &[], &['v'])?;
            p.positionals(name, 1, 1, "delete [-v version] path")?;
            Cmd::Delete {
                version: p.version()?,
                path: p.path(),
            }
        }
        "deleteall" | "rmr" => {
            // `-b batch size` is accepted for compatibility; deletes go one by one.
            let p = split_opts(name, words, &[], &['b'])?;
            p.positionals(name, 1, 1, "deleteall path")?;
            Cmd::DeleteAll { path: p.path() }
        }
        "getAcl" => {
            let p = split_opts(name, words, &['s'], &[])?;
            p.positionals(name, 1, 1, "getAcl [-s] path")?;
            Cmd::GetAcl {
                stat: p.has('s'),
                path: p.path(),
            }
        }
        "setAcl" => {
            let p = split_opts(name, words, &['s', 'R'], &['v'])?;
            p.positionals(name, 2, 2, "setAcl [-s] [-v version] [-R] path acl")?;
            Cmd::SetAcl {
                stat: p.has('s'),
                version: p.version()?,
                recursive: p.has('R'),
                path: p.path(),
                acl: parse_acl(&p.pos[1])?,
            }
        }
        "sync" => {
            let p = split_opts(name, words, &[], &[])?;
            p.positionals(name, 1, 1, "sync path")?;
            Cmd::Sync { path: p.path() }
        }
        "whoami" => {
            let p = split_opts(name, words, &[], &[])?;
            p.positionals(name, 0, 0, "whoami")?;
            Cmd::WhoAmI
        }
        "addauth" => {
            let p = split_opts(name, words, &[], &[])?;
            p.positionals(name, 1, 2, "addauth scheme auth")?;
            Cmd::AddAuth {
                scheme: p.path(),
                auth: p.pos.get(1).cloned().unwrap_or_default(),
            }
        }
        "addWatch" => {
            let p = split_opts(name, words, &[], &['m'])?;
            p.positionals(name, 1, 1, ADD_WATCH_USAGE)?;
            let mode = match p.value('m') {
                None | Some("PERSISTENT_RECURSIVE") => PersistentMode::Recursive,
                Some("PERSISTENT") => PersistentMode::Persistent,
                Some(_) => return Err(usage(ADD_WATCH_USAGE)),
            };
            Cmd::AddWatch {
                mode,
                path: p.path(),
            }
        }
        "removewatches" => {
            let p = split_opts(name, words, &['c', 'd', 'a', 'l'], &[])?;
            p.positionals(name, 1, 1, "removewatches path [-c|-d|-a] [-l]")?;
            let kind = match (p.has('c'), p.has('d'), p.has('a')) {
                (true, false, false) => WatchKind::Children,
                (false, true, false) => WatchKind::Data,
                (false, false, _) => WatchKind::Any,
                _ => {
                    return Err(usage(
                        "removewatches: -c, -d and -a are exclusive\nusage: removewatches path [-c|-d|-a] [-l]",
                    ))
                }
            };
            Cmd::RemoveWatches {
                path: p.path(),
                kind,
                local: p.has('l'),
            }
        }
        "getEphemerals" => {
            let p = split_opts(name, words, &[], &[])?;
            p.positionals(name, 0, 1, "getEphemerals path")?;
            Cmd::GetEphemerals {
                path: p.pos.first().cloned().unwrap_or_else(|| "/".to_string()),
            }
        }
        "getAllChildrenNumber" => {
            let p = split_opts(name, words, &[], &[])?;
            p.positionals(name, 1, 1, "getAllChildrenNumber path")?;
            Cmd::GetAllChildrenNumber { path: p.path() }
        }
        "config" => {
            let p = split_opts(name, words, &['c', 'w', 's'], &[])?;
            p.positionals(name, 0, 0, "config [-c] [-w] [-s]")?;
            Cmd::Config {
                client: p.has('c'),
                watch: p.has('w'),
                stat: p.has('s'),
            }
        }
        "connect" => {
            let p = split_opts(name, words, &[], &[])?;
            p.positionals(name, 0, 1, "connect host:port")?;
            Cmd::Connect { server: p.path() }
        }
        "redo" => {
            let p = split_opts(name, words, &[], &[])?;
            p.positionals(name, 1, 1, "redo cmdno")?;
            let index = p.pos[0]
                .parse::<i64>()
                .map_err(|_| usage(format!("redo: {:?} is not a number", p.pos[0])))?;
            Cmd::Redo { index }
        }
        "printwatches" => {
            let p = split_opts(name, words, &[], &[])?;
            p.positionals(name, 0, 1, "printwatches on|off")?;
            let on = match p.pos.first().map(String::as_str) {
                None => None,
                Some("on") => Some(true),
                Some("off") => Some(false),
                Some(_) => return Err(usage("usage: printwatches on|off")),
            };
            Cmd::PrintWatches { on }
        }
        "close" | "history" | "version" | "help" | "quit" => {
            let p = split_opts(name, words, &[], &[])?;
            p.positionals(name, 0, 0, name)?;
            match name {
                "close" => Cmd::Close,
                "history" => Cmd::History,
                "version" => Cmd::Version,
                "help" => Cmd::Help,
                _ => Cmd::Quit,
            }
        }
        other => return Err(usage(format!("Command not found: {other}\n{USAGE}"))),
    };
    if cmd.path().is_some_and(|p| !p.starts_with('/')) {
        return Err(usage("Path must start with / character"));
    }
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        split_words(s)
    }

    #[test]
    fn quoting_like_zkcli() {
        assert_eq!(
            words("  set /a 'hello world'  "),
            ["set", "/a", "hello world"]
        );
        assert_eq!(words("create /b \"x y\" z"), ["create", "/b", "x y", "z"]);
        assert_eq!(words("get\t/c"), ["get", "/c"]);
        assert!(words("   ").is_empty());
    }

    #[test]
    fn parses_every_option() {
        assert_eq!(
            parse_words(&words("ls -s -w -R /a")).unwrap(),
            Cmd::Ls {
                stat: true,
                watch: true,
                recursive: true,
                path: "/a".into()
            }
        );
        assert_eq!(
            parse_words(&words(
                "create -e -s /a d world:anyone:r,ip:10.0.0.0/8:cdrwa"
            ))
            .unwrap(),
            Cmd::Create {
                seq: true,
                eph: true,
                container: false,
                ttl_ms: None,
                path: "/a".into(),
                data: Some("d".into()),
                acl: Some(vec![
                    AclSpec {
                        scheme: "world".into(),
                        id: "anyone".into(),
                        perms: 1
                    },
                    AclSpec {
                        scheme: "ip".into(),
                        id: "10.0.0.0/8".into(),
                        perms: 31
                    }
                ]),
            }
        );
        assert_eq!(
            parse_words(&words("setAcl -s -v 2 -R /a digest:u:h=:ra")).unwrap(),
            Cmd::SetAcl {
                stat: true,
                version: Some(2),
                recursive: true,
                path: "/a".into(),
                acl: vec![AclSpec {
                    scheme: "digest".into(),
                    id: "u:h=".into(),
                    perms: 17
                }],
            }
        );
        assert_eq!(
            parse_words(&words("removewatches /a -c -l")).unwrap(),
            Cmd::RemoveWatches {
                path: "/a".into(),
                kind: WatchKind::Children,
                local: true
            }
        );
        assert_eq!(
            parse_words(&words("addWatch -m PERSISTENT /a")).unwrap(),
            Cmd::AddWatch {
                mode: PersistentMode::Persistent,
                path: "/a".into()
            }
        );
        assert_eq!(
            parse_words(&words("getEphemerals")).unwrap(),
            Cmd::GetEphemerals { path: "/".into() }
        );
        assert_eq!(
            parse_words(&words("config -c -s")).unwrap(),
            Cmd::Config {
                client: true,
                watch: false,
                stat: true
            }
        );
        assert_eq!(
            parse_words(&words("redo 3")).unwrap(),
            Cmd::Redo { index: 3 }
        );
        assert_eq!(
            parse_words(&words("set /a -1")).unwrap(),
            Cmd::Set {
                stat: false,
                version: None,
                path: "/a".into(),
                data: "-1".into()
            }
        );
    }

    #[test]
    fn rejects_bad_usage() {
        for bad in [
            "frob /a",
            "ls",
            "ls -x /a",
            "set -v nope /a b",
            "get a",
            "addWatch -m SOMETIMES /a",
            "removewatches /a -c -d",
            "setAcl /a bogus",
            "setAcl /a world:anyone:rz",
            "redo x",
            "quit now",
        ] {
            assert!(parse_words(&words(bad)).is_err(), "{bad}");
        }
        let err = parse_words(&words("setAcl /a bogus"))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "bogus does not have the form scheme:id:perm");
        let err = parse_words(&words("get a")).unwrap_err().to_string();
        assert_eq!(err, "Path must start with / character");
    }
}
