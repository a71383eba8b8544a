namespace TcpFork;

/// <summary>
/// Memory for what only the parent uses — the child table, the per-IP table, the epoll and signalfd
/// buffers, the log buffer, the loop's counters — mapped with MADV_WIPEONFORK, so a forked child gets
/// fresh zero pages there instead of sharing the parent's. Why it matters: when the parent writes a
/// page it shares copy-on-write with a child, the parent takes a new copy and the old one stays behind
/// as that child's private memory. Kept in the GC heap, the parent's bookkeeping for each new
/// connection would leave every live child holding stale copies of it (about 50 KiB each, measured);
/// here children never map it, and fork() has fewer page-table entries to copy.
/// </summary>
internal sealed unsafe class ParentMemory : IDisposable
{
    private readonly List<(nint Address, nuint Length)> _mappings = [];

    /// <summary>A zeroed block of <paramref name="count"/> <typeparamref name="T"/>s that children do not share.</summary>
    public T* Allocate<T>(int count)
        where T : unmanaged => Map<T>(count, wipeOnFork: true);

    /// <summary>
    /// A zeroed block that forked children do see, outside the GC heap: for the little a child must read
    /// of the parent's bookkeeping. Each write by the parent after a fork copies the page it is in.
    /// </summary>
    public T* AllocateShared<T>(int count)
        where T : unmanaged => Map<T>(count, wipeOnFork: false);

    private T* Map<T>(int count, bool wipeOnFork)
        where T : unmanaged
    {
        nuint length = (nuint)Math.Max(1, count) * (nuint)sizeof(T);
        length = (length + 4095) & ~(nuint)4095;
        nint p = Interop.Mmap(0, length, Interop.PROT_READ | Interop.PROT_WRITE, Interop.MAP_PRIVATE | Interop.MAP_ANONYMOUS, -1, 0);
        if (p == Interop.MAP_FAILED)
        {
            Interop.Throw("mmap");
        }
        if (wipeOnFork)
        {
            // Linux 4.14+; where it is missing the memory still works, children just share it as before.
            Interop.Madvise(p, length, Interop.MADV_WIPEONFORK);
        }
        _mappings.Add((p, length));
        return (T*)p;
    }

    /// <summary>Unmaps a block from <see cref="Allocate{T}"/> or <see cref="AllocateShared{T}"/> (rules replaced by a reload).</summary>
    public void Free(void* block)
    {
        nint address = (nint)block;
        int i = _mappings.FindIndex(m => m.Address == address);
        if (i >= 0)
        {
            Interop.Munmap(_mappings[i].Address, _mappings[i].Length);
            _mappings.RemoveAt(i);
        }
    }

    public void Dispose()
    {
        foreach ((nint address, nuint length) in _mappings)
        {
            Interop.Munmap(address, length);
        }
        _mappings.Clear();
    }

    /// <summary>
    /// Settles the parent before anyone can connect: gives back what start-up used (parsing, DNS…) —
    /// every resident anonymous page is a page-table entry each fork copies and each child's exit tears
    /// down — and lets the finalizer thread finish what that collection gave it, so no descriptor closes
    /// behind the loop's back and, in fork mode, nothing is left for it before it is parked
    /// (docs/fork-safety.md, invariant 3).
    /// </summary>
    public static void Settle()
    {
        GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
    }
}
