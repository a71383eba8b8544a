namespace TcpFork;

/// <summary>
/// The executable's writable data segment, moved out of anonymous memory so that fork() need not copy
/// its page-table entries. A NativeAOT image keeps its type data there (about 1 MB for tcpfork), and the
/// dynamic loader's relocations at start-up turn every one of those pages into a private anonymous page:
/// fork() copies a page-table entry for each, and each child's exit tears them down again — the largest
/// per-connection cost in the profile (docs/performance.md). Copied into a memfd and mapped back
/// MAP_PRIVATE at the same address, the same bytes become file pages: fork() skips a mapping that has
/// never been written ("a page fault will fill them correctly") and a child faults in only the few pages
/// it reads, from memory shared by every process. MAP_PRIVATE keeps fork's meaning: a child's write, or
/// the parent's, is a private copy-on-write page as before.
/// <para>
/// The parent's own writes there (the runtime fills interface dispatch caches the first time a call site
/// runs) turn the mapping anonymous again, so the fork launcher checks /proc/self/pagemap after 1, 2, 4,
/// 8, … launches and moves it again when it finds a written page; once the loop's code paths have all run,
/// it stays clean. The copy is safe for the same reason a fork is (docs/fork-safety.md, invariants 1 and
/// 3): only this thread runs managed code and the finalizer thread is parked, so nothing writes the segment
/// between the copy and the remap.
/// </para>
/// </summary>
internal sealed unsafe class ImageData : IDisposable
{
    private readonly nint _start;
    private readonly int _pages;
    private readonly ulong* _entries;
    private readonly SafeFd _pagemap;

    private ImageData(nint start, int pages, ulong* entries, SafeFd pagemap)
    {
        _start = start;
        _pages = pages;
        _entries = entries;
        _pagemap = pagemap;
    }

    /// <summary>Finds this executable's writable data segment; null where there is none to move (or no /proc).</summary>
    public static ImageData? Find(ParentMemory memory)
    {
        string? exe;
        string[] maps;
        try
        {
            exe = File.ResolveLinkTarget("/proc/self/exe", returnFinalTarget: true)?.FullName;
            maps = File.ReadAllLines("/proc/self/maps");
        }
        catch (IOException)
        {
            return null;
        }
        (long start, long end) = (0, 0);
        foreach (string line in maps)
        {
            // "start-end perms offset dev inode path": the executable's read-write file mapping.
            string[] f = line.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries);
            if (f.Length == 6 && f[1] == "rw-p" && f[5] == exe)
            {
                string[] range = f[0].Split('-');
                (long s, long e) = (Convert.ToInt64(range[0], 16), Convert.ToInt64(range[1], 16));
                if (e - s > end - start)
                {
                    (start, end) = (s, e);
                }
            }
        }
        int fd;
        fixed (byte* path = "/proc/self/pagemap\0"u8)
        {
            fd = start == 0 ? -1 : Interop.OpenReadOnly(path);
        }
        if (fd < 0)
        {
            return null;
        }
        int pages = (int)((end - start) / Environment.SystemPageSize);
        return new ImageData((nint)start, pages, memory.Allocate<ulong>(pages), new SafeFd(fd));
    }

    /// <summary>True when some page of the segment is private to this process (written since the last move).</summary>
    public bool HasPrivatePages()
    {
        nuint bytes = (nuint)_pages * sizeof(ulong);
        long offset = _start / Environment.SystemPageSize * sizeof(ulong);
        if (Interop.PRead(_pagemap.Fd, (byte*)_entries, bytes, offset) != (nint)bytes)
        {
            return false;
        }
        for (int i = 0; i < _pages; i++)
        {
            // Bit 63: present; bit 61: a file page (clear for a private anonymous copy).
            ulong e = _entries[i];
            if ((e & (1UL << 63)) != 0 && (e & (1UL << 61)) == 0)
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>
    /// Copies the segment into a new memfd and maps that over it, same address, same bytes. A memfd is
    /// never reused: children map the old ones, and their view must not change. False when it could not
    /// (the segment then stays as it was). Allocation-free: it runs from the loop.
    /// </summary>
    public bool Move()
    {
        // The descriptor lives only inside this method (a SafeHandle would be garbage in the loop) and
        // is close-on-exec; nothing can fork between here and the close.
        int fd;
        fixed (byte* name = "tcpfork-image-data\0"u8)
        {
            fd = Interop.MemfdCreate(name, Interop.MFD_CLOEXEC);
        }
        if (fd < 0)
        {
            return false;
        }
        try
        {
            int length = _pages * Environment.SystemPageSize;
            if (!Interop.WriteAll(fd, new ReadOnlySpan<byte>((void*)_start, length)))
            {
                return false;
            }
            nint mapped = Interop.Mmap(_start, (nuint)length, Interop.PROT_READ | Interop.PROT_WRITE, Interop.MAP_PRIVATE | Interop.MAP_FIXED, fd, 0);
            return mapped == _start;
        }
        finally
        {
            Interop.Close(fd);
        }
    }

    public void Dispose() => _pagemap.Dispose();
}
