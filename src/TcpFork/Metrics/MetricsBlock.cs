namespace TcpFork;

/// <summary>
/// The shared counter block of <c>--metrics</c>: a memfd one <see cref="MetricsData"/> long, mapped
/// shared and writable in the parent. Children that serve connections do not get the mapping
/// (MADV_DONTFORK: fork copies no page-table entry for it, and no handler can touch it); a scrape child,
/// forked or spawned, maps the memfd read-only (<see cref="MapReadOnly"/>) and sees the parent's
/// counters live. The memfd is numbered 5 or above, so a spawn can move a connection onto 3 and the
/// block onto 4 without one overwriting the other.
/// </summary>
internal sealed unsafe class MetricsBlock : IDisposable
{
    public const int FirstFd = 5;
    private static readonly nuint s_length = (nuint)((sizeof(MetricsData) + 4095) & ~4095);

    private MetricsBlock(SafeFd fd, MetricsData* data)
    {
        Fd = fd;
        Data = data;
    }

    /// <summary>The memfd, close-on-exec.</summary>
    public SafeFd Fd { get; }

    public MetricsData* Data { get; }

    public static MetricsBlock Create()
    {
        int created;
        fixed (byte* name = "tcpfork-metrics\0"u8)
        {
            created = (int)Interop.Check(Interop.MemfdCreate(name, Interop.MFD_CLOEXEC), "memfd_create");
        }
        int fd = Interop.DupCloseOnExec(created, FirstFd);
        Interop.Close(created);
        var handle = new SafeFd((int)Interop.Check(fd, "fcntl F_DUPFD_CLOEXEC"));
        try
        {
            Interop.Check(Interop.Ftruncate(fd, (long)s_length), "ftruncate");
            nint p = Interop.Mmap(0, s_length, Interop.PROT_READ | Interop.PROT_WRITE, Interop.MAP_SHARED, fd, 0);
            if (p == Interop.MAP_FAILED)
            {
                Interop.Throw("mmap");
            }
            Interop.Madvise(p, s_length, Interop.MADV_DONTFORK);
            return new MetricsBlock(handle, (MetricsData*)p);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>In a scrape child: the block behind <paramref name="fd"/>, read-only; null if it cannot be mapped or is not filled in.</summary>
    public static MetricsData* MapReadOnly(int fd)
    {
        nint p = Interop.Mmap(0, s_length, Interop.PROT_READ, Interop.MAP_SHARED, fd, 0);
        return p == Interop.MAP_FAILED || ((MetricsData*)p)->Magic != MetricsData.Expected ? null : (MetricsData*)p;
    }

    public void Dispose()
    {
        Interop.Munmap((nint)Data, s_length);
        Fd.Dispose();
    }
}
