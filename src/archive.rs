//! Copying an active file into its archive in one streaming pass that also
//! validates the JSON, counts entries by status and computes the SHA-256.
//!
//! The pass runs on three threads, so it takes about the time of its slowest
//! part and not the sum of all three. The calling thread reads the file and
//! writes the copy, one thread feeds the scanner and one the SHA-256. They
//! share the same chunks, so the scanner and the hash see exactly the bytes
//! written to the copy. Memory use does not grow with the
//! file: at most [`BUFFERS`] chunks of [`CHUNK`] bytes exist at once, and the
//! scanner keeps only a small fingerprint per entry.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;

use sha2::{Digest, Sha256};

use crate::failpoint;
use crate::journal::hex;
use crate::preconditions;
use crate::scan::{BlockScanner, NotHandled, ScanError, Scanner, Summary};

/// Size of one chunk.
const CHUNK: usize = 512 * 1024;

/// Number of chunks that can be in flight between the reader and the two
/// consumers, which bounds the pass's buffer memory at 8 MiB.
const BUFFERS: usize = 16;

/// Bytes written to the copy between two requests to start writing it back to
/// disk, so that the final fsync has little left to wait for.
const WRITEBACK_STEP: u64 = 8 * 1024 * 1024;

/// The outcome of one pass over a file.
#[derive(Debug)]
pub struct Copied {
    pub bytes: u64,
    pub sha256: String,
    /// The scan result; an error means the file is not valid JSON or not an
    /// object of objects. The bytes were copied in full either way.
    pub scan: Result<Summary, ScanError>,
}

/// Reads `input` to its end, writing every byte to `output` when given.
pub fn copy_and_scan(input: &mut File, output: Option<&File>) -> io::Result<Copied> {
    copy_and_scan_with(input, output, Scanner::new(), false)
}

/// One chunk of the file, shared by the scanner and the hasher.
struct Chunk {
    buffer: Vec<u8>,
    len: usize,
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        &self.buffer[..self.len]
    }
}

/// Like [`copy_and_scan`], with a scanner the caller set up.
///
/// With `stop_when_invalid`, reading stops soon after the first byte that
/// makes the file invalid, for callers that will not keep an invalid copy. A
/// file of a gigabyte of zero bytes then costs a few chunks, not a gigabyte
/// of copying. `bytes` and `sha256` then cover only what was read, which
/// runs up to [`BUFFERS`] chunks past the invalid byte.
pub fn copy_and_scan_with(
    input: &mut File,
    output: Option<&File>,
    scanner: Scanner,
    stop_when_invalid: bool,
) -> io::Result<Copied> {
    let invalid = AtomicBool::new(false);
    let (free_sender, free_receiver) = mpsc::channel::<Vec<u8>>();
    let (scan_sender, scan_receiver) = mpsc::sync_channel::<Arc<Chunk>>(BUFFERS);
    let (hash_sender, hash_receiver) = mpsc::sync_channel::<Arc<Chunk>>(BUFFERS);
    // The scanner goes to its thread only once the thread runs, so that it
    // is still here for the one-thread pass when the thread cannot start.
    let (scanner_sender, scanner_receiver) = mpsc::channel::<Scanner>();
    // A second descriptor for reading the bytes again from the start, which the scan thread
    // needs if the block scanner gives up. Without one, the scan uses `Scanner` throughout.
    let source = Rescan::open(input, output);

    thread::scope(|scope| {
        let hash_free = free_sender.clone();
        let hash_thread = spawn(scope, "sha256", move || {
            let mut hasher = Sha256::new();
            for chunk in hash_receiver {
                hasher.update(chunk.bytes());
                recycle(chunk, &hash_free);
            }
            hasher.finalize()
        });
        let Some(hash_thread) = hash_thread else {
            return copy_and_scan_inline(input, output, scanner, stop_when_invalid);
        };
        let scan_free = free_sender;
        let invalid = &invalid;
        let source = source.as_ref();
        let scan_thread = spawn(scope, "scan", move || {
            let scanner = scanner_receiver
                .recv()
                .expect("the scanner is sent once this thread runs");
            scan_chunks(scanner, source, scan_receiver, &scan_free, invalid)
        });
        let Some(scan_thread) = scan_thread else {
            drop(hash_sender);
            join(hash_thread);
            return copy_and_scan_inline(input, output, scanner, stop_when_invalid);
        };
        scanner_sender
            .send(scanner)
            .expect("the scan thread waits for the scanner");

        let stop = || stop_when_invalid && invalid.load(Ordering::Relaxed);
        let read = read_chunks(input, output, &free_receiver, stop, |chunk| {
            // A send fails only when a consumer thread has panicked, and
            // joining it below reports that.
            let _ = scan_sender.send(Arc::clone(&chunk));
            let _ = hash_sender.send(chunk);
        });
        drop(scan_sender);
        drop(hash_sender);
        let scan = join(scan_thread);
        let digest = join(hash_thread);
        Ok(Copied {
            bytes: read?,
            sha256: hex(&digest),
            scan: scan?,
        })
    })
}

/// Source of the bytes that the scan thread reads again when the block scanner gives up.
///
/// That is the copy when there is one, because nothing else writes it, so it has exactly the
/// bytes that were read. Without a copy it is the input file, and a writer that ignores the lock
/// could change those bytes in between, so the file's metadata from before the pass is kept to
/// detect that.
struct Rescan {
    file: File,
    input_before: Option<std::fs::Metadata>,
}

impl Rescan {
    fn open(input: &File, output: Option<&File>) -> Option<Rescan> {
        let rescan = match output {
            Some(output) => Rescan {
                file: output.try_clone().ok()?,
                input_before: None,
            },
            None => Rescan {
                file: input.try_clone().ok()?,
                input_before: Some(input.metadata().ok()?),
            },
        };
        Some(rescan)
    }

    /// Feeds `scanner` the first `len` bytes, up to the first scan error.
    fn feed(&self, scanner: &mut Scanner, len: u64) -> io::Result<()> {
        let mut buffer = vec![0u8; CHUNK];
        let mut offset = 0;
        while offset < len {
            let want = (len - offset).min(CHUNK as u64) as usize;
            let count = match self.file.read_at(&mut buffer[..want], offset) {
                Ok(0) => return Err(changed_during_pass()),
                Ok(count) => count,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            if scanner.feed(&buffer[..count]).is_err() {
                break;
            }
            offset += count as u64;
        }
        if let Some(before) = &self.input_before
            && preconditions::changed_since(before, &self.file.metadata()?)
        {
            return Err(changed_during_pass());
        }
        Ok(())
    }
}

fn changed_during_pass() -> io::Error {
    io::Error::other(
        "the file changed while it was read, so a process that does not take the lock is \
         writing it; try again when it is done",
    )
}

/// Scans the chunks on the scan thread: first with a [`BlockScanner`], and when it gives up,
/// with `scanner`, which then reads the bytes already seen again through `rescan`. With no
/// `rescan`, `scanner` does the whole scan. Returns an error when the bytes cannot be read
/// again or the file changed before they were.
fn scan_chunks(
    mut scanner: Scanner,
    rescan: Option<&Rescan>,
    chunks: mpsc::Receiver<Arc<Chunk>>,
    free: &mpsc::Sender<Vec<u8>>,
    invalid: &AtomicBool,
) -> io::Result<Result<Summary, ScanError>> {
    let mut fast = rescan.map(|rescan| (BlockScanner::like(&scanner), rescan));
    let mut seen = 0u64;
    let mut scan_error = None;
    let mut read_error = None;
    for chunk in chunks {
        let bytes = chunk.bytes();
        if let Some((block_scanner, rescan)) = &mut fast
            && block_scanner.feed(bytes).is_err()
        {
            if let Err(error) = rescan.feed(&mut scanner, seen) {
                read_error = Some(error);
                invalid.store(true, Ordering::Relaxed);
            }
            fast = None;
        }
        if fast.is_none()
            && scan_error.is_none()
            && read_error.is_none()
            && let Err(error) = scanner.feed(bytes)
        {
            scan_error = Some(error);
            invalid.store(true, Ordering::Relaxed);
        }
        seen += bytes.len() as u64;
        recycle(chunk, free);
    }
    if let Some(error) = read_error {
        return Err(error);
    }
    if let Some(error) = scan_error {
        return Ok(Err(error));
    }
    if let Some((block_scanner, rescan)) = fast {
        match block_scanner.finish() {
            Ok(summary) => return Ok(Ok(summary)),
            Err(NotHandled) => rescan.feed(&mut scanner, seen)?,
        }
    }
    Ok(scanner.finish())
}

/// Starts a consumer thread of the pass, or returns `None`, with a warning,
/// when the system cannot start one, as under a low limit on processes.
fn spawn<'scope, T: Send + 'scope>(
    scope: &'scope thread::Scope<'scope, '_>,
    name: &str,
    work: impl FnOnce() -> T + Send + 'scope,
) -> Option<thread::ScopedJoinHandle<'scope, T>> {
    let started = failpoint::check("copy-thread").and_then(|()| {
        thread::Builder::new()
            .name(format!("order-reset-{name}"))
            .spawn_scoped(scope, work)
    });
    match started {
        Ok(handle) => Some(handle),
        Err(error) => {
            log::warn!("cannot start a thread to copy and check files ({error}); using one thread");
            None
        }
    }
}

/// Does the whole pass on the calling thread, for when no thread can start.
fn copy_and_scan_inline(
    input: &mut File,
    mut output: Option<&File>,
    mut scanner: Scanner,
    stop_when_invalid: bool,
) -> io::Result<Copied> {
    let mut hasher = Sha256::new();
    let mut error = None;
    let mut buffer = vec![0u8; CHUNK];
    let mut bytes = 0u64;
    loop {
        let len = fill(input, &mut buffer)?;
        if len == 0 {
            break;
        }
        let chunk = &buffer[..len];
        if let Some(file) = output.as_mut() {
            file.write_all(chunk)?;
        }
        hasher.update(chunk);
        bytes += len as u64;
        if error.is_none()
            && let Err(scan_error) = scanner.feed(chunk)
        {
            error = Some(scan_error);
        }
        if stop_when_invalid && error.is_some() {
            break;
        }
    }
    Ok(Copied {
        bytes,
        sha256: hex(&hasher.finalize()),
        scan: match error {
            Some(error) => Err(error),
            None => scanner.finish(),
        },
    })
}

/// Reads `input` in chunks until its end or until `stop` returns true,
/// writes each chunk to `output` when given, and hands it to `consume`.
/// Returns the number of bytes read.
fn read_chunks(
    input: &mut File,
    mut output: Option<&File>,
    free: &mpsc::Receiver<Vec<u8>>,
    stop: impl Fn() -> bool,
    mut consume: impl FnMut(Arc<Chunk>),
) -> io::Result<u64> {
    let mut allocated = 0;
    let mut bytes = 0u64;
    let mut written_back = 0u64;
    while !stop() {
        let mut buffer = match free.try_recv() {
            Ok(buffer) => buffer,
            Err(_) if allocated < BUFFERS => {
                allocated += 1;
                vec![0u8; CHUNK]
            }
            Err(_) => match free.recv() {
                Ok(buffer) => buffer,
                // Both consumers are gone, which only a panic causes.
                Err(_) => break,
            },
        };
        let len = fill(input, &mut buffer)?;
        if len == 0 {
            break;
        }
        if let Some(file) = output.as_mut() {
            file.write_all(&buffer[..len])?;
            if bytes + len as u64 - written_back >= WRITEBACK_STEP {
                start_writeback(file, written_back, bytes + len as u64 - written_back);
                written_back = bytes + len as u64;
            }
        }
        if output.is_some() {
            drop_from_cache(input, bytes, len as u64);
        }
        bytes += len as u64;
        consume(Arc::new(Chunk { buffer, len }));
    }
    Ok(bytes)
}

/// Reads until `buffer` is full or the input ends, and returns the count.
fn fill(input: &mut File, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match input.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(count) => filled += count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// Returns a chunk's buffer to the reader once the last of its two users is
/// done with it. `Arc::into_inner` gives the buffer to exactly one of them.
fn recycle(chunk: Arc<Chunk>, free: &mpsc::Sender<Vec<u8>>) {
    if let Some(chunk) = Arc::into_inner(chunk) {
        // The reader may have finished already, and then the buffer is dropped.
        let _ = free.send(chunk.buffer);
    }
}

/// Asks the kernel to start writing a range of `file` to disk without waiting
/// for it. This is only a hint for speed: durability comes from the fsync
/// that the caller does later, so a failure, such as on a filesystem that
/// does not support it, is ignored.
fn start_writeback(file: &File, offset: u64, len: u64) {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: sync_file_range only reads its integer arguments, and the
    // descriptor stays open for the duration of the call.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Asks the kernel to drop a range of `file` from the page cache, once the
/// range is in the copy.
///
/// The source of a copy is an active file about to be replaced or an archive
/// being restored, so its pages are of little further use. Freeing them here,
/// while the other threads work, is cheaper than freeing them all at once
/// when the replaced file is closed: that made a 1 GB reset about a fifth
/// faster in alternating runs (see `BENCHMARKS.md`). Dirty pages are not
/// dropped, but their writeback starts now instead of within the kernel's
/// expiry time (30 s by default). This is only a hint, so a failure is
/// ignored.
fn drop_from_cache(file: &File, offset: u64, len: u64) {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: posix_fadvise only reads its integer arguments, and the
    // descriptor stays open for the duration of the call.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), offset, len, libc::POSIX_FADV_DONTNEED);
    }
}

/// Joins a consumer thread, passing its panic on to the caller.
fn join<T>(handle: thread::ScopedJoinHandle<'_, T>) -> T {
    match handle.join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Returns the size and SHA-256 of a file's content.
pub fn hash_file(input: &mut File) -> io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let bytes = for_each_chunk(input, |chunk| {
        hasher.update(chunk);
        Ok(())
    })?;
    Ok((bytes, hex(&hasher.finalize())))
}

/// Calls `consume` on each chunk read from `input` until its end and returns
/// the byte count.
pub fn for_each_chunk(
    input: &mut File,
    mut consume: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<u64> {
    let mut buffer = vec![0u8; CHUNK];
    let mut bytes = 0u64;
    loop {
        let count = fill(input, &mut buffer)?;
        if count == 0 {
            return Ok(bytes);
        }
        consume(&buffer[..count])?;
        bytes += count as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom};

    /// Returns a sessions document of `count` entries, one of which, at `odd_at`, has the
    /// member `odd` in place of its status.
    fn document(count: usize, odd_at: usize, odd: &str) -> Vec<u8> {
        let mut text = String::from("{\n");
        for i in 0..count {
            let status = if i % 3 == 0 { "open" } else { "done" };
            let member = if i == odd_at {
                odd.to_string()
            } else {
                format!("\"status\": \"{status}\"")
            };
            let comma = if i + 1 == count { "" } else { "," };
            text.push_str(&format!(
                "  \"id-{i}\": {{\n    {member},\n    \"items\": [1.5, null, \"x\"]\n  }}{comma}\n"
            ));
        }
        text.push_str("}\n");
        text.into_bytes()
    }

    /// Runs the three-thread pass over `bytes` in a file, and `Scanner` over them in memory.
    fn pass_and_scanner(bytes: &[u8]) -> (Copied, Result<Summary, ScanError>) {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(bytes).unwrap();
        file.seek(SeekFrom::Start(0)).unwrap();
        let copied = copy_and_scan(&mut file, None).unwrap();
        let mut scanner = Scanner::new();
        let expected = scanner.feed(bytes).and_then(|()| scanner.finish());
        (copied, expected)
    }

    #[test]
    fn escaped_status_counted_after_rescan() {
        // About 3 MB, so that the escape comes several chunks after the start.
        let bytes = document(40_000, 39_000, r#""status": "op\u0065n""#);
        assert!(bytes.len() > 4 * CHUNK);
        let (copied, expected) = pass_and_scanner(&bytes);
        let summary = copied.scan.unwrap();
        assert_eq!(summary, expected.unwrap());
        assert_eq!(summary.entries, 40_000);
        assert_eq!(summary.by_status["open"], 13_334);
        assert_eq!(summary.by_status["done"], 26_666);
        assert_eq!(copied.bytes, bytes.len() as u64);
    }

    #[test]
    fn escaped_key_in_last_chunk_counted() {
        let bytes = document(40_000, 39_999, r#""st\u0061tus": "open""#);
        let (copied, expected) = pass_and_scanner(&bytes);
        let summary = copied.scan.unwrap();
        assert_eq!(summary, expected.unwrap());
        assert_eq!(summary.by_status["done"], 26_666);
        assert_eq!(summary.by_status["open"], 13_334);
    }

    #[test]
    fn syntax_error_late_in_file_has_exact_position() {
        let bytes = document(40_000, 39_000, r#""status": "open" "x": 1"#);
        let (copied, expected) = pass_and_scanner(&bytes);
        let error = copied.scan.unwrap_err();
        assert_eq!(error, expected.unwrap_err());
        assert_eq!(error.line, 39_000 * 4 + 3);
        assert_eq!(error.column, 22);
        assert_eq!(
            error.message,
            "expected ',' or '}' after an object member, found '\"'"
        );
    }

    /// Bytes that make the block scanner give up in their second 64-byte chunk, and the same
    /// bytes after a writer rewrote two statuses in place.
    const READ: &[u8] =
        br#"{"a":{"status":"open"},"b":{"status":"open"},      "c":{"status":"op\u0065n"}}"#;
    const REWRITTEN: &[u8] =
        br#"{"a":{"status":"done"},"b":{"status":"done"},      "c":{"status":"op\u0065n"}}"#;

    /// Runs the scan thread's loop on `READ` cut into two chunks after byte 64.
    fn scan_read_bytes(rescan: &Rescan) -> io::Result<Result<Summary, ScanError>> {
        let (sender, receiver) = mpsc::sync_channel(2);
        let (free, _unused) = mpsc::channel();
        for part in [&READ[..64], &READ[64..]] {
            let chunk = Chunk {
                buffer: part.to_vec(),
                len: part.len(),
            };
            sender.send(Arc::new(chunk)).unwrap();
        }
        drop(sender);
        scan_chunks(
            Scanner::new(),
            Some(rescan),
            receiver,
            &free,
            &AtomicBool::new(false),
        )
    }

    fn file_with(bytes: &[u8]) -> File {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(bytes).unwrap();
        file
    }

    #[test]
    fn fallback_reads_copy_not_changed_file() {
        let input = file_with(REWRITTEN);
        let copy = file_with(READ);
        let rescan = Rescan::open(&input, Some(&copy)).unwrap();
        let summary = scan_read_bytes(&rescan).unwrap().unwrap();
        assert_eq!(summary.entries, 3);
        assert_eq!(summary.by_status.len(), 1);
        assert_eq!(summary.by_status["open"], 3);
    }

    #[test]
    fn fallback_without_copy_detects_change() {
        let input = file_with(READ);
        let rescan = Rescan::open(&input, None).unwrap();
        input.write_all_at(REWRITTEN, 0).unwrap();
        // Coarse timestamps could leave mtime as it was, so the writer's change is made visible.
        input
            .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000))
            .unwrap();
        let error = scan_read_bytes(&rescan).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("the file changed while it was read"),
            "{error}"
        );
    }

    #[test]
    fn fallback_without_copy_reads_unchanged_file() {
        let input = file_with(READ);
        let rescan = Rescan::open(&input, None).unwrap();
        let summary = scan_read_bytes(&rescan).unwrap().unwrap();
        assert_eq!(summary.by_status["open"], 3);
    }

    #[test]
    fn shape_error_is_reported_like_scanner() {
        let mut bytes = document(40_000, usize::MAX, "");
        bytes.truncate(bytes.len() - 2);
        bytes.extend_from_slice(b",\n  \"odd\": 5\n}\n");
        let (copied, expected) = pass_and_scanner(&bytes);
        let error = copied.scan.unwrap_err();
        assert_eq!(error, expected.unwrap_err());
        assert_eq!(error.kind, crate::scan::ScanErrorKind::Shape);
        assert_eq!(
            error.message,
            "entry \"odd\" is a number, expected an object"
        );
    }
}
