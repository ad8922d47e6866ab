//! The pack format of a stored cluster: one file holding a manifest, then a data directory packed as
//! (path, mode, contents) records. One file rather than a copied tree because creating a thousand small
//! files on a busy disk costs far more than writing one; and a pack is read into memory in one go, so
//! taking a snapshot costs the running cluster only the time to read its files.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::cluster::privileges::ServerUser;

const MAGIC: &[u8] = b"cargo-pgtest pack 1\n";

/// A directory tree in memory, in its on-disk form: one record per directory and file, in creation order
/// (a directory before what it holds), each with its permission bits and, for a file, its contents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pack {
    pub(super) bytes: Vec<u8>,
    /// Where the records start in `bytes` (after the magic and manifest of a pack read from the cache).
    pub(super) records_start: usize,
}

/// One record of a pack, borrowed from its bytes.
struct Record<'a> {
    /// Relative to the packed directory; empty for the directory itself.
    path: &'a Path,
    mode: u32,
    /// `None` for a directory.
    contents: Option<&'a [u8]>,
}

impl Pack {
    /// Reads the tree under `dir`. A data directory holds no symlinks unless tablespaces are used, which a
    /// throwaway cluster never does; anything but directories and files is left out.
    pub fn read(dir: &Path, keep: &dyn Fn(&Path) -> bool) -> io::Result<Pack> {
        // The run waits for this while it takes a snapshot: the tree is listed first, so that its files are
        // read straight into one buffer of the right size (about three times faster here than growing it
        // file by file). `keep` picks the files; directories always stay.
        let mut entries = Vec::new();
        list_tree(dir, Path::new(""), &mut entries)?;
        entries.retain(|entry| entry.size.is_none() || keep(&entry.path));
        let size: u64 = entries
            .iter()
            .map(|e| e.path.as_os_str().len() as u64 + RECORD_FIXED_BYTES + e.size.unwrap_or(0))
            .sum();
        let mut pack = Pack {
            bytes: Vec::with_capacity(usize::try_from(size).unwrap_or(0)),
            records_start: 0,
        };
        advise_huge_pages(&mut pack.bytes);
        for entry in entries {
            match entry.size {
                None => pack.push_header(&entry.path, entry.mode, false),
                Some(size) => {
                    pack.push_file(&dir.join(&entry.path), &entry.path, entry.mode, size)?
                }
            }
        }
        Ok(pack)
    }

    /// A file's record, its contents read directly into the pack. `size` is what the listing saw; should
    /// the file have changed since, the record says what was read.
    fn push_file(&mut self, file: &Path, path: &Path, mode: u32, size: u64) -> io::Result<()> {
        use io::Read;
        let record_at = self.bytes.len();
        self.push_header(path, mode, true);
        let length_at = self.bytes.len();
        self.bytes.extend_from_slice(&size.to_le_bytes());
        let mut opened = match fs::File::open(file) {
            Ok(opened) => opened,
            // Gone since the listing (a running server's own file): it is not part of the tree any more.
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                self.bytes.truncate(record_at);
                return Ok(());
            }
            Err(error) => return Err(error),
        };
        let read = opened.read_to_end(&mut self.bytes)? as u64;
        if read != size {
            self.bytes[length_at..length_at + 8].copy_from_slice(&read.to_le_bytes());
        }
        Ok(())
    }

    /// A record's start: its path, its mode, and whether contents follow (a file) or not (a directory).
    fn push_header(&mut self, path: &Path, mode: u32, is_file: bool) {
        put_bytes(&mut self.bytes, path.as_os_str().as_encoded_bytes());
        self.bytes.extend_from_slice(&(mode & 0o7777).to_le_bytes());
        self.bytes.push(u8::from(is_file));
    }

    fn records(&self) -> impl Iterator<Item = Option<Record<'_>>> {
        let mut input = &self.bytes[self.records_start..];
        std::iter::from_fn(move || (!input.is_empty()).then(|| next_record(&mut input)))
    }

    /// Recreates the tree as `to` (which must not exist), its files given to `owner` when the server runs as
    /// another account (PostgreSQL insists on owning its data directory), else to us.
    pub(crate) fn write(&self, to: &Path, owner: Option<&ServerUser>) -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let owner = owner.filter(|o| o.is_other_account);
        for record in self.records() {
            let record = record.ok_or_else(|| io::Error::other("damaged cluster pack"))?;
            let path = to.join(record.path);
            // The modes are the server's own 0700 / 0600, which no umask narrows further.
            match record.contents {
                None => {
                    fs::DirBuilder::new().mode(record.mode).create(&path)?;
                    if let Some(owner) = owner {
                        std::os::unix::fs::chown(&path, Some(owner.uid), Some(owner.gid))?;
                    }
                }
                Some(contents) => {
                    let mut file = fs::File::options()
                        .write(true)
                        .create_new(true)
                        .mode(record.mode)
                        .open(&path)?;
                    io::Write::write_all(&mut file, contents)?;
                    if let Some(owner) = owner {
                        std::os::unix::fs::fchown(&file, Some(owner.uid), Some(owner.gid))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes the on-disk form: magic, manifest, then the records.
    pub(super) fn write_with_manifest(
        &self,
        file: &mut fs::File,
        manifest: &str,
    ) -> io::Result<()> {
        let mut head = MAGIC.to_vec();
        put_bytes(&mut head, manifest.as_bytes());
        io::Write::write_all(file, &head)?;
        io::Write::write_all(file, &self.bytes[self.records_start..])
    }

    /// Reads the on-disk form back; `None` for anything damaged or of another format.
    pub(super) fn split_manifest(bytes: Vec<u8>) -> Option<(String, Pack)> {
        let mut input = bytes.strip_prefix(MAGIC)?;
        let manifest = String::from_utf8(take_bytes(&mut input)?.to_vec()).ok()?;
        let records_start = bytes.len() - input.len();
        let pack = Pack {
            bytes,
            records_start,
        };
        let whole = pack.records().all(|record| record.is_some());
        whole.then_some((manifest, pack))
    }
}

fn next_record<'a>(input: &mut &'a [u8]) -> Option<Record<'a>> {
    let path = Path::new(std::str::from_utf8(take_bytes(input)?).ok()?);
    if path.is_absolute() || path.components().any(|c| c.as_os_str() == "..") {
        return None;
    }
    let mode = u32::from_le_bytes(take(input, 4)?.try_into().ok()?);
    let contents = match take(input, 1)? {
        [0] => None,
        [1] => Some(take_bytes(input)?),
        _ => return None,
    };
    Some(Record {
        path,
        mode,
        contents,
    })
}

/// Asks for transparent huge pages under `buffer`'s capacity: filling tens of megabytes of fresh memory
/// otherwise takes a page fault every 4 KiB, which costs more here than copying the bytes. A hint only:
/// where the kernel says no, nothing changes.
#[cfg(target_os = "linux")]
fn advise_huge_pages(buffer: &mut Vec<u8>) {
    const PAGE: usize = 4096;
    let start = buffer.as_mut_ptr() as usize;
    let aligned = start.next_multiple_of(PAGE);
    let end = (start + buffer.capacity()) / PAGE * PAGE;
    if end > aligned {
        // SAFETY: the range lies inside the buffer's own allocation; MADV_HUGEPAGE changes no contents.
        unsafe {
            libc::madvise(
                aligned as *mut libc::c_void,
                end - aligned,
                libc::MADV_HUGEPAGE,
            );
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_buffer: &mut Vec<u8>) {}

/// A record's bytes besides its path and contents, at most: the path's length (8), the mode (4), the kind
/// (1) and a file's length (8).
const RECORD_FIXED_BYTES: u64 = 8 + 4 + 1 + 8;

/// A directory or file of a tree being packed.
struct Listed {
    path: PathBuf,
    mode: u32,
    /// `None` for a directory.
    size: Option<u64>,
}

/// Lists the tree under `root/relative` in pack order: a directory before what it holds, names sorted.
fn list_tree(root: &Path, relative: &Path, out: &mut Vec<Listed>) -> io::Result<()> {
    let dir = root.join(relative);
    out.push(Listed {
        path: relative.to_owned(),
        mode: fs::metadata(&dir)?.mode(),
        size: None,
    });
    let mut entries: Vec<fs::DirEntry> = fs::read_dir(&dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(fs::DirEntry::file_name);
    for entry in entries {
        let path = relative.join(entry.file_name());
        // A running server may remove a file of its own (a temporary one) between the listing and here.
        let metadata = match entry.metadata() {
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            metadata => metadata?,
        };
        if metadata.is_dir() {
            list_tree(root, &path, out)?;
        } else if metadata.is_file() {
            out.push(Listed {
                path,
                mode: metadata.mode(),
                size: Some(metadata.len()),
            });
        }
    }
    Ok(())
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn take<'a>(input: &mut &'a [u8], count: usize) -> Option<&'a [u8]> {
    if input.len() < count {
        return None;
    }
    let (taken, rest) = input.split_at(count);
    *input = rest;
    Some(taken)
}

fn take_bytes<'a>(input: &mut &'a [u8]) -> Option<&'a [u8]> {
    let length = u64::from_le_bytes(take(input, 8)?.try_into().ok()?);
    take(input, usize::try_from(length).ok()?)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    pub(crate) fn sample_cluster(parent: &Path) -> PathBuf {
        let data = parent.join("cluster");
        fs::create_dir(&data).unwrap();
        fs::set_permissions(&data, fs::Permissions::from_mode(0o700)).unwrap();
        fs::create_dir(data.join("base")).unwrap();
        fs::write(data.join("base/1"), b"pages").unwrap();
        fs::write(data.join("PG_VERSION"), b"15\n").unwrap();
        fs::set_permissions(data.join("PG_VERSION"), fs::Permissions::from_mode(0o600)).unwrap();
        data
    }

    #[test]
    fn a_pack_leaves_out_the_files_it_is_told_to() {
        let target = tempfile::tempdir().unwrap();
        let data = sample_cluster(target.path());
        let pack = Pack::read(&data, &|path| path != Path::new("base/1")).unwrap();
        let copy = target.path().join("copy");
        pack.write(&copy, None).unwrap();
        assert!(copy.join("base").is_dir(), "directories stay");
        assert!(!copy.join("base/1").exists());
        assert_eq!(fs::read(copy.join("PG_VERSION")).unwrap(), b"15\n");
    }
}
