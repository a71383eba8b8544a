using System.Globalization;

namespace TcpFork.Tests;

/// <summary>
/// A pids cgroup (v1, at /sys/fs/cgroup/pids) to make fork, spawn and thread creation fail on purpose:
/// threads count toward pids.max. Skips the test, saying so loudly, where it cannot be made (no such
/// hierarchy, not root). Dispose lifts the limit, waits until the group is empty and removes it.
/// </summary>
public sealed class PidsGroup : IDisposable
{
    private const string Root = "/sys/fs/cgroup/pids";
    private readonly string _path;

    public PidsGroup()
    {
        Skip.IfNot(Directory.Exists(Root) && File.Exists(Path.Combine(Root, "cgroup.procs")),
            $"FAULT NOT SET UP: no pids cgroup (v1) at {Root}; cannot make fork fail on purpose");
        _path = Path.Combine(Root, $"tcpfork-test-{Guid.NewGuid():N}");
        try
        {
            Directory.CreateDirectory(_path);
        }
        catch (UnauthorizedAccessException e)
        {
            Skip.If(true, $"FAULT NOT SET UP: cannot create a pids cgroup ({e.Message}); run as root");
        }
    }

    /// <summary>Moves <paramref name="pid"/> (and the children it makes from now on) into the group.</summary>
    public void Add(int pid) => File.WriteAllText(Path.Combine(_path, "cgroup.procs"), pid.ToString(CultureInfo.InvariantCulture));

    /// <summary>Processes and threads in the group now.</summary>
    public int Current => int.Parse(File.ReadAllText(Path.Combine(_path, "pids.current")).Trim(), CultureInfo.InvariantCulture);

    /// <summary>Allows <paramref name="more"/> tasks (processes or threads) beyond those there now.</summary>
    public void AllowMore(int more) => File.WriteAllText(Path.Combine(_path, "pids.max"), (Current + more).ToString(CultureInfo.InvariantCulture));

    public void Unlimit() => File.WriteAllText(Path.Combine(_path, "pids.max"), "max");

    /// <summary>Call after the processes in it were ended: waits (bounded) for it to be empty, then removes it.</summary>
    public void Dispose()
    {
        Unlimit();
        for (int i = 0; i < 100 && File.ReadAllText(Path.Combine(_path, "cgroup.procs")).Trim().Length > 0; i++)
        {
            Thread.Sleep(50);
        }
        Directory.Delete(_path);
    }
}
