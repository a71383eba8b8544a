using System.Buffers.Text;

namespace TcpFork;

/// <summary>
/// Resource limits each child sets on itself before its handler (or program) runs. Null leaves a limit
/// as inherited. The limits are set with both the soft and the hard value, so a handler cannot raise them.
/// </summary>
public sealed class ChildLimits
{
    /// <summary>
    /// The child's memory limit in bytes. For a program (<see cref="TcpForkServer.ForProgram"/>,
    /// <c>tcpfork exec</c>) it is RLIMIT_AS, exactly as <c>ulimit -v</c> or daemontools' <c>softlimit -a</c>
    /// set it. A C# handler's process already has tens of GB of address space reserved by the runtime
    /// (the GC's regions) before it serves, so there it means: the GC heap may hold at most this many
    /// bytes (<c>GCHeapHardLimit</c>, set with <see cref="GC.RefreshMemoryLimit"/>), and RLIMIT_AS is the
    /// child's virtual size when the handler starts plus this many bytes, so native memory and thread
    /// stacks beyond what it inherited are capped too. A handler that allocates past it gets an
    /// <see cref="OutOfMemoryException"/>; if the handler lets it escape, the child logs
    /// <c>error: PID: handler exceeded the memory limit (N bytes)</c> and exits 1.
    /// Defaults to null (inherited).
    /// </summary>
    public long? AddressSpace { get; set; }

    /// <summary>RLIMIT_CPU in seconds: past it the kernel sends SIGXCPU. Defaults to null (inherited).</summary>
    public long? CpuSeconds { get; set; }

    /// <summary>RLIMIT_NOFILE: the highest descriptor number plus one the child may open. Defaults to null (inherited).</summary>
    public long? OpenFiles { get; set; }

    /// <summary>
    /// RLIMIT_NPROC: fork, clone and thread creation fail (EAGAIN) in the child once the child's real user
    /// has this many processes <i>and threads</i> in all — every process of that uid counts, the server and
    /// its other children included, and a .NET process runs several threads (a spawned JIT child a dozen),
    /// so a handler that starts threads or tasks reaches it sooner than the number suggests. Not enforced
    /// for root (or with CAP_SYS_RESOURCE/CAP_SYS_ADMIN). Defaults to null (inherited).
    /// </summary>
    public long? Processes { get; set; }

    /// <summary>True when any limit is set.</summary>
    public bool Any => AddressSpace is not null || CpuSeconds is not null || OpenFiles is not null || Processes is not null;

    /// <summary>
    /// Sets the limits on this process: the one place the rule for <see cref="AddressSpace"/> lives.
    /// <paramref name="managedHandler"/> is true when C# code (a handler) runs next, false when a program is exec'd next.
    /// </summary>
    internal unsafe void Apply(bool managedHandler)
    {
        if (AddressSpace is long bytes)
        {
            if (managedHandler)
            {
                // Documented way to change the hard limit at run time; works under NativeAOT too (LibraryTests).
                AppContext.SetData("GCHeapHardLimit", (ulong)bytes);
                GC.RefreshMemoryLimit();
                ulong size = VirtualSize();
                Set(Interop.RLIMIT_AS, size + (ulong)bytes < size ? ulong.MaxValue : size + (ulong)bytes, nameof(AddressSpace));
            }
            else
            {
                Set(Interop.RLIMIT_AS, (ulong)bytes, nameof(AddressSpace));
            }
        }
        Set(Interop.RLIMIT_CPU, (ulong?)CpuSeconds, nameof(CpuSeconds));
        Set(Interop.RLIMIT_NOFILE, (ulong?)OpenFiles, nameof(OpenFiles));
        Set(Interop.RLIMIT_NPROC, (ulong?)Processes, nameof(Processes));

        static void Set(int resource, ulong? value, string property)
        {
            if (value is ulong v)
            {
                var limit = new Interop.RLimit { Current = v, Max = v };
                if (Interop.SetRLimit(resource, &limit) < 0)
                {
                    throw Interop.Error($"setrlimit for TcpForkServerOptions.Limits.{property}");
                }
            }
        }
    }

    /// <summary>This process's virtual size in bytes: the first field of /proc/self/statm (pages).</summary>
    private static unsafe ulong VirtualSize()
    {
        byte* text = stackalloc byte[128];
        int fd;
        fixed (byte* path = "/proc/self/statm\0"u8)
        {
            fd = Interop.OpenReadOnly(path);
        }
        if (fd < 0)
        {
            throw Interop.Error("open /proc/self/statm");
        }
        nint n = Interop.Read(fd, text, 128);
        Interop.Close(fd);
        if (n <= 0 || !Utf8Parser.TryParse(new ReadOnlySpan<byte>(text, (int)n), out ulong pages, out _))
        {
            throw new InvalidOperationException("unable to read the virtual size from /proc/self/statm");
        }
        return pages * (ulong)Environment.SystemPageSize;
    }

    /// <summary>
    /// At start: every limit at least 1, and none a child could not set. A child sets soft and hard
    /// together, and raising a hard limit needs CAP_SYS_RESOURCE (which a child of <c>--user</c> no longer
    /// has), RLIMIT_NOFILE at most fs.nr_open even then: such a value would fail in every child, so every
    /// connection, and is refused here instead.
    /// </summary>
    internal unsafe void Validate(bool childrenKeepCapabilities)
    {
        bool canRaise = childrenKeepCapabilities && HasCapSysResource();
        foreach ((long? v, string name, int resource) in new[] { (AddressSpace, nameof(AddressSpace), Interop.RLIMIT_AS), (CpuSeconds, nameof(CpuSeconds), Interop.RLIMIT_CPU), (OpenFiles, nameof(OpenFiles), Interop.RLIMIT_NOFILE), (Processes, nameof(Processes), Interop.RLIMIT_NPROC) })
        {
            if (v is not long value)
            {
                continue;
            }
            if (value < 1)
            {
                throw new ArgumentOutOfRangeException("Limits." + name, v, "a limit must be at least 1");
            }
            if (resource == Interop.RLIMIT_NOFILE && NrOpen() is long most && value > most)
            {
                throw new ArgumentOutOfRangeException("Limits." + name, v, $"{value} is above the kernel's fs.nr_open ({most}), the most any process may open");
            }
            Interop.RLimit current;
            // AddressSpace is the GC heap's limit for a C# handler, not RLIMIT_AS itself, so not checked here.
            if (resource != Interop.RLIMIT_AS && Interop.GetRLimit(resource, &current) == 0 && (ulong)value > current.Max && !canRaise)
            {
                throw new ArgumentOutOfRangeException("Limits." + name, v,
                    $"{value} is above this process's hard limit of {current.Max}, which its children cannot raise (that needs CAP_SYS_RESOURCE, and --user drops it)");
            }
        }
    }

    /// <summary>True when this process may raise hard limits (CAP_SYS_RESOURCE, bit 24 of CapEff in /proc/self/status).</summary>
    private static bool HasCapSysResource()
    {
        const int CapSysResource = 24;
        return ((ProcStatus.HexField("/proc/self/status", "CapEff") ?? 0) & (1UL << CapSysResource)) != 0;
    }

    private static long NrOpen() =>
        long.TryParse(File.ReadAllText("/proc/sys/fs/nr_open").Trim(), System.Globalization.CultureInfo.InvariantCulture, out long n) ? n : long.MaxValue;
}
