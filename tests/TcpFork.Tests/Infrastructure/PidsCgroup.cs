using System.Globalization;

namespace TcpFork.Tests;

/// <summary>
/// A pids cgroup made for one test, so that fork and spawn fail for real (as root, RLIMIT_NPROC is not
/// enforced; pids.max is). Works with cgroup v1 (a group under this process's own group of the pids
/// hierarchy) and cgroup v2 (a child of the nearest group, from this process's own upwards, whose
/// cgroup.subtree_control has <c>pids</c>, enabling it there if none has it and the kernel allows).
/// <see cref="TryCreate"/> says exactly what is missing when neither works. Dispose waits for the
/// processes in the group to end and removes it.
/// </summary>
public sealed class PidsCgroup : IDisposable
{
    private PidsCgroup(string path, string how)
    {
        Path = path;
        How = how;
    }

    /// <summary>The group's directory.</summary>
    public string Path { get; }

    /// <summary>Which hierarchy the group is in, and where (for the test's output).</summary>
    public string How { get; }

    /// <summary>
    /// A new, empty pids group, or null and the reason none could be made. TCPFORK_TEST_CGROUP=v1 or v2
    /// restricts the search to one version (to try the other code path on a hybrid machine).
    /// </summary>
    public static PidsCgroup? TryCreate(out string reason)
    {
        string only = Environment.GetEnvironmentVariable("TCPFORK_TEST_CGROUP") ?? "";
        List<(string FsType, string Root, string MountPoint, string Options)> mounts = Mounts()
            .Where(m => only.Length == 0 || (m.Item1 == "cgroup" ? only == "v1" : only == "v2")).ToList();
        List<(string Controllers, string Path)> own = OwnGroups();
        var missing = new List<string>();

        var v1 = mounts.FirstOrDefault(m => m.FsType == "cgroup" && m.Options.Split(',').Contains("pids"));
        if (v1.MountPoint is not null)
        {
            string ownPath = own.FirstOrDefault(g => g.Controllers.Split(',').Contains("pids")).Path ?? "/";
            string parent = Under(v1.MountPoint, v1.Root, ownPath);
            if (TryMake(parent, "cgroup v1", missing) is { } group)
            {
                reason = "";
                return group;
            }
        }
        else
        {
            missing.Add(only == "v2" ? "cgroup v1: not tried (TCPFORK_TEST_CGROUP=v2)" : "cgroup v1: no pids hierarchy in /proc/self/mountinfo");
        }

        var v2 = mounts.FirstOrDefault(m => m.FsType == "cgroup2");
        if (v2.MountPoint is not null)
        {
            string ownPath = own.FirstOrDefault(g => g.Controllers.Length == 0).Path ?? "/";
            if (TryV2(v2.MountPoint, Under(v2.MountPoint, v2.Root, ownPath), missing) is { } group)
            {
                reason = "";
                return group;
            }
        }
        else
        {
            missing.Add(only == "v1" ? "cgroup v2: not tried (TCPFORK_TEST_CGROUP=v1)" : "cgroup v2: no cgroup2 file system in /proc/self/mountinfo");
        }
        reason = string.Join("; ", missing);
        return null;
    }

    /// <summary>Moves <paramref name="pid"/> (and so every process it starts later) into the group.</summary>
    public bool TryAdd(int pid, out string reason)
    {
        try
        {
            Write("cgroup.procs", pid.ToString(CultureInfo.InvariantCulture));
            reason = "";
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            reason = $"{How}: cannot move pid {pid} into {System.IO.Path.Combine(Path, "cgroup.procs")}: {e.Message}";
            return false;
        }
    }

    /// <summary>Processes and threads in the group now (threads count toward pids.max).</summary>
    public int Current => int.Parse(File.ReadAllText(System.IO.Path.Combine(Path, "pids.current")).Trim(), CultureInfo.InvariantCulture);

    /// <summary>Sets pids.max: a number, or null for no limit.</summary>
    public void Limit(int? max) => Write("pids.max", max is { } n ? n.ToString(CultureInfo.InvariantCulture) : "max");

    public void Dispose()
    {
        Limit(null);
        // The group can be removed once its processes are gone: wait for each to exit (pidfd, no polling).
        foreach (string line in File.ReadAllLines(System.IO.Path.Combine(Path, "cgroup.procs")))
        {
            int pid = int.Parse(line, CultureInfo.InvariantCulture);
            int fd = Native.PidFd(pid);
            if (fd >= 0)
            {
                Native.WaitForExit(fd, TimeSpan.FromSeconds(20)); // one still running makes the rmdir below fail, loudly
            }
        }
        // An exited process can stay listed until its parent reaps it; rmdir says EBUSY until then.
        for (int attempt = 0; ; attempt++)
        {
            try
            {
                Directory.Delete(Path);
                return;
            }
            catch (IOException) when (attempt < 100)
            {
                Thread.Sleep(50);
            }
        }
    }

    private void Write(string file, string value) => File.WriteAllText(System.IO.Path.Combine(Path, file), value);

    private static PidsCgroup? TryV2(string mount, string own, List<string> missing)
    {
        var chain = new List<string>();
        for (string? dir = own; dir is not null && dir.StartsWith(mount, StringComparison.Ordinal); dir = System.IO.Path.GetDirectoryName(dir))
        {
            chain.Add(dir);
        }
        // A group whose children already have pids.max.
        foreach (string dir in chain)
        {
            if (Words(dir, "cgroup.subtree_control").Contains("pids"))
            {
                return TryMake(dir, "cgroup v2", missing);
            }
        }
        // Else enable it where the parent offers it. This process's own group holds processes, so the
        // kernel refuses there unless it is the root ("no internal processes"); an ancestor may allow it.
        var refused = new List<string>();
        foreach (string dir in chain)
        {
            if (!Words(dir, "cgroup.controllers").Contains("pids"))
            {
                continue;
            }
            try
            {
                File.WriteAllText(System.IO.Path.Combine(dir, "cgroup.subtree_control"), "+pids");
                return TryMake(dir, "cgroup v2 (pids enabled in its cgroup.subtree_control by this test)", missing);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                refused.Add($"{dir}/cgroup.subtree_control refused +pids: {e.Message}");
            }
        }
        string offered = string.Join(' ', Words(mount, "cgroup.controllers"));
        missing.Add(refused.Count > 0
            ? $"cgroup v2 at {mount}: no group from {own} up has pids in cgroup.subtree_control; {string.Join("; ", refused)}"
            : $"cgroup v2 at {mount}: the pids controller is not available ({mount}/cgroup.controllers offers '{offered}'; " +
              "it is bound to a v1 hierarchy or disabled)");
        return null;
    }

    private static PidsCgroup? TryMake(string parent, string hierarchy, List<string> missing)
    {
        string path = System.IO.Path.Combine(parent, $"tcpfork-test-{Guid.NewGuid():N}");
        try
        {
            Directory.CreateDirectory(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            missing.Add($"{hierarchy}: cannot create {path}: {e.Message} (needs root or a delegated group)");
            return null;
        }
        if (!File.Exists(System.IO.Path.Combine(path, "pids.max")))
        {
            Directory.Delete(path);
            missing.Add($"{hierarchy}: {path} has no pids.max");
            return null;
        }
        return new PidsCgroup(path, $"{hierarchy} under {parent}");
    }

    private static string[] Words(string dir, string file)
    {
        try
        {
            return File.ReadAllText(System.IO.Path.Combine(dir, file)).Split([' ', '\n'], StringSplitOptions.RemoveEmptyEntries);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return [];
        }
    }

    /// <summary>The directory for a group path of /proc/self/cgroup, given where (and from which root) the hierarchy is mounted.</summary>
    private static string Under(string mountPoint, string mountRoot, string groupPath)
    {
        string relative = mountRoot == "/" ? groupPath
            : groupPath.StartsWith(mountRoot, StringComparison.Ordinal) ? groupPath[mountRoot.Length..] : "/";
        return System.IO.Path.TrimEndingDirectorySeparator(mountPoint + (relative.Length == 0 ? "/" : relative));
    }

    /// <summary>cgroup mounts from /proc/self/mountinfo: type, root inside the hierarchy, mount point, super options.</summary>
    private static List<(string, string, string, string)> Mounts()
    {
        var list = new List<(string, string, string, string)>();
        foreach (string line in File.ReadLines("/proc/self/mountinfo"))
        {
            // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL…] - FSTYPE SOURCE SUPEROPTIONS
            string[] f = line.Split(' ');
            int dash = Array.IndexOf(f, "-");
            if (dash > 0 && dash + 3 < f.Length && f[dash + 1] is "cgroup" or "cgroup2")
            {
                list.Add((f[dash + 1], Unescape(f[3]), Unescape(f[4]), f[dash + 3]));
            }
        }
        return list;
    }

    private static string Unescape(string field) => field.Replace("\\040", " ", StringComparison.Ordinal);

    /// <summary>This process's groups from /proc/self/cgroup: (controllers, path); v2's line has no controllers.</summary>
    private static List<(string, string)> OwnGroups() => File.ReadLines("/proc/self/cgroup")
        .Select(l => l.Split(':', 3))
        .Where(f => f.Length == 3)
        .Select(f => (f[1], f[2]))
        .ToList();
}
