namespace TcpFork;

/// <summary>Resource limits each child sets on itself before its handler (or program) runs. Null leaves a limit as inherited.</summary>
public sealed class ChildLimits
{
    /// <summary>RLIMIT_AS in bytes. Defaults to null (inherited).</summary>
    public long? AddressSpace { get; set; }

    /// <summary>RLIMIT_CPU in seconds. Defaults to null (inherited).</summary>
    public long? CpuSeconds { get; set; }

    /// <summary>RLIMIT_NOFILE. Defaults to null (inherited).</summary>
    public long? OpenFiles { get; set; }

    /// <summary>RLIMIT_NPROC (not enforced for root). Defaults to null (inherited).</summary>
    public long? Processes { get; set; }

    /// <summary>True when any limit is set.</summary>
    public bool Any => AddressSpace is not null || CpuSeconds is not null || OpenFiles is not null || Processes is not null;

    internal unsafe void Apply()
    {
        Set(Interop.RLIMIT_AS, AddressSpace, "--limit-as");
        Set(Interop.RLIMIT_CPU, CpuSeconds, "--limit-cpu");
        Set(Interop.RLIMIT_NOFILE, OpenFiles, "--limit-nofile");
        Set(Interop.RLIMIT_NPROC, Processes, "--limit-nproc");

        static void Set(int resource, long? value, string name)
        {
            if (value is long v)
            {
                var limit = new Interop.RLimit { Current = (ulong)v, Max = (ulong)v };
                if (Interop.SetRLimit(resource, &limit) < 0)
                {
                    throw Interop.Error($"setrlimit {name}");
                }
            }
        }
    }

    internal void Validate()
    {
        foreach ((long? v, string name) in new[] { (AddressSpace, nameof(AddressSpace)), (CpuSeconds, nameof(CpuSeconds)), (OpenFiles, nameof(OpenFiles)), (Processes, nameof(Processes)) })
        {
            if (v is < 1)
            {
                throw new ArgumentOutOfRangeException(name, v, "a limit must be at least 1");
            }
        }
    }
}
