//! The interactive shell: `corral cli [-server ...]` with no command.
//!
//! In a terminal, lines are read with `rustyline` (line editing, the persistent history of
//! `history.rs` on the arrow keys, tab completion of command names and of znode paths, which
//! asks the server for the children of the typed path's parent), behind zkCli's prompt
//! `[zk: host:port(CONNECTED) N] `. Watch events are drawn above the line being edited.
//! With stdin not a terminal (a script piped in), lines are read plainly, with no prompt, and
//! each is run as typed.
//!
//! Reading blocks, so it happens on its own thread; the session, its pings and the watch
//! printers run on the async runtime meanwhile. The two sides take turns over two bounded
//! channels: the shell sends the next prompt, the reader answers with the next line.

use std::io::{BufRead, IsTerminal};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, ExternalPrinter as _, Helper};
use tokio::sync::mpsc;

use super::command::{parse_words, split_words, Cmd, COMMAND_NAMES};
use super::history::{self, History};
use super::shell::{current_client, ClientSlot, ConnectOptions, EventSink, Shell};
use super::CliError;

/// How long tab completion waits for the server's list of children.
const COMPLETION_DEADLINE: Duration = Duration::from_secs(2);

/// What the reader thread hands back.
enum Input {
    Line(String),
    /// Ctrl-C at the prompt: drop the line, prompt again.
    Interrupted,
    /// Ctrl-D or end of the piped input.
    Eof,
}

/// Runs the shell until `quit` or end of input.
pub async fn run(opts: ConnectOptions) -> Result<(), CliError> {
    let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let mut history = History::load(history::default_path());
    let slot = ClientSlot::default();
    let (prompt_tx, prompt_rx) = std_mpsc::sync_channel::<String>(1);
    let (line_tx, mut line_rx) = mpsc::channel::<Input>(1);

    let events = if tty {
        let mut editor: Editor<ShellHelper, DefaultHistory> = Editor::new().map_err(readline_io)?;
        editor.set_helper(Some(ShellHelper {
            handle: tokio::runtime::Handle::current(),
            slot: slot.clone(),
        }));
        for entry in history.entries() {
            editor
                .add_history_entry(entry.as_str())
                .map_err(readline_io)?;
        }
        let mut printer = editor.create_external_printer().map_err(readline_io)?;
        let events = EventSink::with_printer(Box::new(move |text: String| {
            if let Err(e) = printer.print(text.clone()) {
                tracing::debug!("external printer: {e}");
                print!("{text}");
            }
        }));
        spawn_reader(
            move |prompt: &str| read_edited(&mut editor, prompt),
            prompt_rx,
            line_tx,
        )?;
        events
    } else {
        let stdin = std::io::stdin();
        spawn_reader(
            move |_: &str| read_plain(&mut stdin.lock()),
            prompt_rx,
            line_tx,
        )?;
        EventSink::stdout()
    };

    let mut shell = Shell::new(opts, slot, events, true);
    println!("Connecting to {}", shell.server());
    if tty {
        println!("Welcome to Corral!");
    }
    if let Err(e) = shell.connect(None).await {
        eprintln!("{e}");
    }
    loop {
        // Let watch printers that were woken by the last command print before the prompt.
        tokio::task::yield_now().await;
        let prompt = if tty {
            shell.prompt(history.next_index())
        } else {
            String::new()
        };
        if prompt_tx.send(prompt).is_err() {
            break;
        }
        let line = match line_rx.recv().await {
            Some(Input::Line(l)) => l,
            Some(Input::Interrupted) => continue,
            Some(Input::Eof) | None => break,
        };
        if run_line(&mut shell, &mut history, &line).await == Flow::Quit {
            break;
        }
    }
    drop(prompt_tx);
    tokio::task::yield_now().await;
    shell.close().await;
    Ok(())
}

#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Quit,
}

/// Runs one typed line, recording it in the history (a `redo` is recorded as the command it
/// re-runs, as zkCli does).
async fn run_line(shell: &mut Shell, history: &mut History, line: &str) -> Flow {
    let words = split_words(line);
    if words.is_empty() {
        return Flow::Continue;
    }
    let current = history.next_index();
    let (line, parsed) = match parse_words(&words) {
        Ok(Cmd::Redo { index }) => {
            let target = usize::try_from(index)
                .ok()
                .filter(|&i| i < current)
                .and_then(|i| history.get(i))
                .map(str::to_string);
            let Some(target) = target else {
                history.push(line);
                eprintln!("Command index out of range");
                return Flow::Continue;
            };
            match parse_words(&split_words(&target)) {
                Ok(Cmd::Redo { .. }) => {
                    history.push(line);
                    eprintln!("No redoing redos");
                    return Flow::Continue;
                }
                parsed => (target, parsed),
            }
        }
        parsed => (line.to_string(), parsed),
    };
    history.push(&line);
    let result = match parsed {
        Ok(Cmd::Quit) => return Flow::Quit,
        Ok(Cmd::History) => Ok(history.listing(current)),
        Ok(cmd) => shell.execute(cmd).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(out) => print!("{out}"),
        Err(e) => eprintln!("{e}"),
    }
    Flow::Continue
}

/// Starts the reader thread: for each prompt received, read a line and send it back.
fn spawn_reader(
    mut read: impl FnMut(&str) -> Input + Send + 'static,
    prompts: std_mpsc::Receiver<String>,
    lines: mpsc::Sender<Input>,
) -> Result<(), CliError> {
    std::thread::Builder::new()
        .name("cli-reader".into())
        .spawn(move || {
            let _quiet =
                tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::default());
            while let Ok(prompt) = prompts.recv() {
                let input = read(&prompt);
                let eof = matches!(input, Input::Eof);
                if lines.blocking_send(input).is_err() || eof {
                    return;
                }
            }
        })?;
    Ok(())
}

fn read_plain(stdin: &mut impl BufRead) -> Input {
    let mut buf = Vec::new();
    match stdin.read_until(b'\n', &mut buf) {
        Ok(0) | Err(_) => Input::Eof,
        Ok(_) => {
            let line = String::from_utf8_lossy(&buf);
            Input::Line(line.trim_end_matches(['\n', '\r']).to_string())
        }
    }
}

fn read_edited(editor: &mut Editor<ShellHelper, DefaultHistory>, prompt: &str) -> Input {
    match editor.readline(prompt) {
        Ok(line) => {
            if !line.trim().is_empty() {
                // Only the in-memory list for the arrow keys; History owns the file.
                let _ = editor.add_history_entry(line.as_str());
            }
            Input::Line(line)
        }
        Err(ReadlineError::Interrupted) => Input::Interrupted,
        Err(_) => Input::Eof,
    }
}

fn readline_io(e: ReadlineError) -> CliError {
    match e {
        ReadlineError::Io(e) => CliError::Io(e),
        other => CliError::Io(std::io::Error::other(other.to_string())),
    }
}

/// Tab completion for the line editor: command names in the first word, znode paths in a word
/// starting with `/`.
struct ShellHelper {
    handle: tokio::runtime::Handle,
    slot: ClientSlot,
}

impl ShellHelper {
    fn children(&self, parent: &str) -> Vec<String> {
        let Some(client) = current_client(&self.slot) else {
            return Vec::new();
        };
        // The reader thread is outside the runtime, which the shell's thread drives while it
        // waits for this line.
        // The timer is made inside the async block, where block_on has entered the runtime.
        let listed = self.handle.block_on(async {
            tokio::time::timeout(COMPLETION_DEADLINE, client.list_children(parent)).await
        });
        match listed {
            Ok(Ok(mut c)) => {
                c.sort();
                c
            }
            _ => Vec::new(),
        }
    }
}

/// Completions of `word` (a command name if `first`, else a path), as full replacements.
fn complete_word(
    word: &str,
    first: bool,
    children: impl FnOnce(&str) -> Vec<String>,
) -> Vec<String> {
    if first {
        return COMMAND_NAMES
            .iter()
            .filter(|c| c.starts_with(word))
            .map(|c| format!("{c} "))
            .collect();
    }
    let Some(slash) = word.rfind('/') else {
        return Vec::new();
    };
    let (dir, partial) = (&word[..=slash], &word[slash + 1..]);
    let parent = if dir == "/" {
        "/"
    } else {
        dir.trim_end_matches('/')
    };
    children(parent)
        .into_iter()
        .filter(|c| c.starts_with(partial))
        .map(|c| format!("{dir}{c}"))
        .collect()
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let start = before.rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let word = &before[start..];
        let first = before[..start].trim().is_empty();
        let candidates = complete_word(word, first, |parent| self.children(parent))
            .into_iter()
            .map(|c| Pair {
                display: c.trim_end().rsplit('/').next().unwrap_or(&c).to_string(),
                replacement: c,
            })
            .collect();
        Ok((start, candidates))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}
impl Highlighter for ShellHelper {}
impl Validator for ShellHelper {}
impl Helper for ShellHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_commands_and_paths() {
        let none = |_: &str| -> Vec<String> { panic!("no server call for commands") };
        assert_eq!(
            complete_word("getA", true, none),
            ["getAcl ", "getAllChildrenNumber "]
        );
        let kids = |parent: &str| -> Vec<String> {
            assert_eq!(parent, "/app");
            vec!["alpha".into(), "beta".into(), "alps".into()]
        };
        assert_eq!(
            complete_word("/app/al", false, kids),
            ["/app/alpha", "/app/alps"]
        );
        let root = |parent: &str| -> Vec<String> {
            assert_eq!(parent, "/");
            vec!["app".into(), "zookeeper".into()]
        };
        assert_eq!(complete_word("/a", false, root), ["/app"]);
        assert!(complete_word("data", false, |_| Vec::new()).is_empty());
    }
}
