using System.Globalization;
using System.Runtime.InteropServices;

namespace TcpFork.Tests;

/// <summary>What the tests read from the kernel about processes: signals, /proc.</summary>
public static partial class Native
{
    /// <summary>The inode of the server's end of a connection, from /proc/net/tcp (local port, remote port).</summary>
    public static string ServerSideInode(int serverPort, int clientPort)
    {
        string local = $":{serverPort:X4}", remote = $":{clientPort:X4}";
        foreach (string line in File.ReadLines("/proc/net/tcp").Skip(1))
        {
            string[] f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (f[1].EndsWith(local, StringComparison.Ordinal) && f[2].EndsWith(remote, StringComparison.Ordinal))
            {
                return f[9];
            }
        }
        throw new InvalidOperationException($"no /proc/net/tcp entry for {serverPort} <- {clientPort}");
    }

    /// <summary>The inode of the socket listening on <paramref name="port"/>, from /proc/net/tcp (state 0A).</summary>
    public static string ListeningInode(int port) => File.ReadLines("/proc/net/tcp").Skip(1)
        .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
        .Single(f => f[1].EndsWith($":{port:X4}", StringComparison.Ordinal) && f[3] == "0A")[9];

    public const int SIGKILL = 9, SIGTERM = 15, SIGHUP = 1, SIGINT = 2, SIGUSR2 = 12;

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    public static partial int Kill(int pid, int signal);

    [StructLayout(LayoutKind.Sequential)]
    public struct RLimit
    {
        public ulong Current;
        public ulong Max;
    }

    [LibraryImport("libc", EntryPoint = "prlimit", SetLastError = true)]
    public static unsafe partial int PrLimit(int pid, int resource, RLimit* newLimit, RLimit* oldLimit);

    public const int RLIMIT_NOFILE = 7;

    /// <summary>The children of <paramref name="pid"/> and their states (R, S, Z…), from /proc/*/stat.</summary>
    public static List<(int Pid, char State)> Children(int pid)
    {
        var list = new List<(int, char)>();
        foreach (string dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out int child))
            {
                continue;
            }
            string stat;
            try
            {
                stat = File.ReadAllText(Path.Combine(dir, "stat"));
            }
            catch (IOException)
            {
                continue;
            }
            // pid (comm) S ppid ...: comm may hold spaces, so parse after the last ')'.
            string[] rest = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            if (int.Parse(rest[1], CultureInfo.InvariantCulture) == pid)
            {
                list.Add((child, rest[0][0]));
            }
        }
        return list;
    }

    /// <summary>Names of the threads of <paramref name="pid"/>.</summary>
    public static List<string> ThreadNames(int pid) =>
        Directory.GetDirectories($"/proc/{pid}/task").Select(t => File.ReadAllText(Path.Combine(t, "comm")).Trim()).ToList();

    /// <summary>A field of /proc/PID/status, e.g. SigBlk.</summary>
    public static string StatusField(int pid, string field, int? tid = null)
    {
        string path = tid is null ? $"/proc/{pid}/status" : $"/proc/{pid}/task/{tid}/status";
        return File.ReadLines(path).First(l => l.StartsWith(field + ":", StringComparison.Ordinal))[(field.Length + 1)..].Trim();
    }

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial int Syscall(long number, int pid, int flags);

    [LibraryImport("libc", EntryPoint = "poll", SetLastError = true)]
    private static unsafe partial int Poll(long* fds, int count, int timeoutMs);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);

    /// <summary>pidfd_open(2) of any process (not only a child): readable once it has exited. -1 if it is gone already.</summary>
    public static int PidFd(int pid) => Syscall(434, pid, 0);

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial int SyscallSignal(long number, int pidFd, int signal, nint info, int flags);

    /// <summary>pidfd_send_signal(2): signals the very process <paramref name="pidFd"/> was opened for, never a later one that reused its pid.</summary>
    public static int PidFdSignal(int pidFd, int signal) => SyscallSignal(424, pidFd, signal, 0, 0);

    public static void CloseFd(int fd) => Close(fd);

    /// <summary>Waits (poll on <paramref name="pidFd"/>, no sleeping loop) until that process has exited; false on timeout. Closes the descriptor unless told not to.</summary>
    public static unsafe bool WaitForExit(int pidFd, TimeSpan timeout, bool close = true)
    {
        try
        {
            long pfd = 1L << 32; // struct pollfd { int fd = pidFd; short events = POLLIN; short revents; }
            pfd |= (uint)pidFd;
            int n;
            var clock = System.Diagnostics.Stopwatch.StartNew();
            do
            {
                int left = (int)Math.Max(0, (timeout - clock.Elapsed).TotalMilliseconds);
                n = Poll(&pfd, 1, left);
            }
            while (n < 0 && Marshal.GetLastPInvokeError() == 4 && clock.Elapsed < timeout); // EINTR
            return n > 0;
        }
        finally
        {
            if (close)
            {
                Close(pidFd);
            }
        }
    }

    public static bool IsAlive(int pid) => StateOf(pid) is not ('Z' or 'X' or '\0');

    public static char StateOf(int pid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[stat.LastIndexOf(')') + 2];
        }
        catch (IOException)
        {
            return '\0';
        }
    }
}

public static partial class Native
{
    private const ulong SIOCOUTQ = 0x5411;

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static unsafe partial int Ioctl(int fd, ulong request, int* value);

    /// <summary>Bytes <paramref name="socket"/> has sent that its peer's kernel has not yet acknowledged (SIOCOUTQ).</summary>
    public static unsafe int UnacknowledgedBytes(System.Net.Sockets.Socket socket)
    {
        int n;
        Assert.Equal(0, Ioctl((int)socket.Handle, SIOCOUTQ, &n));
        return n;
    }
}
