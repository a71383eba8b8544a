using System.Runtime.InteropServices;

namespace TcpFork;

internal static unsafe partial class Interop
{
    internal const int O_CLOEXEC = 0x80000;

    private const int F_GETFD = 1, F_SETFD = 2, F_GETFL = 3, F_SETFL = 4, FD_CLOEXEC = 1, F_DUPFD_CLOEXEC = 1030;

    [LibraryImport(Libc, EntryPoint = "fcntl", SetLastError = true)]
    private static partial int Fcntl(int fd, int command, int argument);

    /// <summary>
    /// Sets FD_CLOEXEC and O_NONBLOCK on an inherited descriptor (a socket passed by the service
    /// manager); -1 with errno set on failure.
    /// </summary>
    internal static int SetCloseOnExecNonBlocking(int fd)
    {
        int fdFlags = Fcntl(fd, F_GETFD, 0);
        int statusFlags = fdFlags < 0 ? -1 : Fcntl(fd, F_GETFL, 0);
        return statusFlags < 0 || Fcntl(fd, F_SETFD, fdFlags | FD_CLOEXEC) < 0 || Fcntl(fd, F_SETFL, statusFlags | O_NONBLOCK) < 0 ? -1 : 0;
    }

    /// <summary>fcntl(F_DUPFD_CLOEXEC): a close-on-exec copy of <paramref name="fd"/> at the lowest free number from <paramref name="atLeast"/>; -1 with errno set on failure.</summary>
    internal static int DupCloseOnExec(int fd, int atLeast) => Fcntl(fd, F_DUPFD_CLOEXEC, atLeast);
    internal const short POLLIN = 1, POLLOUT = 4;

    /// <summary>struct pollfd.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct PollFd
    {
        public int Fd;
        public short Events;
        public short Revents;
    }

    /// <summary>poll(2) on one descriptor for <paramref name="events"/>, up to <paramref name="timeoutMs"/> (-1: no limit); 1 ready, 0 timed out, -1 with errno set (EINTR included).</summary>
    internal static int PollOne(int fd, short events, int timeoutMs)
    {
        var p = new PollFd { Fd = fd, Events = events };
        return Poll(&p, 1, timeoutMs);
    }

    [LibraryImport(Libc, EntryPoint = "poll", SetLastError = true)]
    internal static partial int Poll(PollFd* fds, nuint count, int timeoutMs);

    [LibraryImport(Libc, EntryPoint = "close", SetLastError = true)]
    internal static partial int Close(int fd);

    /// <summary>close_range(2)'s flag: mark the range close-on-exec instead of closing it (Linux 5.11).</summary>
    internal const int CLOSE_RANGE_CLOEXEC = 4;

    [LibraryImport(Libc, EntryPoint = "close_range", SetLastError = true)]
    internal static partial int CloseRange(uint first, uint last, int flags);

    [LibraryImport(Libc, EntryPoint = "pipe2", SetLastError = true)]
    internal static partial int Pipe2(int* fds, int flags);

    [LibraryImport(Libc, EntryPoint = "dup2", SetLastError = true)]
    internal static partial int Dup2(int oldFd, int newFd);

    [LibraryImport(Libc, EntryPoint = "open", SetLastError = true)]
    private static partial int OpenOnce(byte* path, int flags);

    [LibraryImport(Libc, EntryPoint = "pread", SetLastError = true)]
    private static partial nint PReadOnce(int fd, byte* buffer, nuint count, long offset);

    /// <summary>open(2) read-only and close-on-exec (plus <paramref name="flags"/>), retried on EINTR; -1 with errno set on failure.</summary>
    internal static int OpenReadOnly(byte* path, int flags = 0)
    {
        int r;
        while (Retry(r = OpenOnce(path, O_CLOEXEC | flags))) { }
        return r;
    }

    /// <summary>pread(2), retried on EINTR; returns -1 with errno set on failure.</summary>
    internal static nint PRead(int fd, byte* buffer, nuint count, long offset)
    {
        nint r;
        while (Retry(r = PReadOnce(fd, buffer, count, offset))) { }
        return r;
    }

    [LibraryImport(Libc, EntryPoint = "read", SetLastError = true)]
    private static partial nint ReadOnce(int fd, byte* buffer, nuint count);

    [LibraryImport(Libc, EntryPoint = "write", SetLastError = true)]
    private static partial nint WriteOnce(int fd, byte* buffer, nuint count);

    /// <summary>read(2), retried on EINTR; returns -1 with errno set on failure.</summary>
    internal static nint Read(int fd, byte* buffer, nuint count)
    {
        nint r;
        while (Retry(r = ReadOnce(fd, buffer, count))) { }
        return r;
    }

    /// <summary>write(2) once, retried on EINTR; the count written, or -1 with errno set.</summary>
    internal static nint Write(int fd, byte* buffer, nuint count)
    {
        nint r;
        while (Retry(r = WriteOnce(fd, buffer, count))) { }
        return r;
    }

    /// <summary>Writes all of <paramref name="data"/>, across partial writes and EINTR; false on failure (errno set).</summary>
    internal static bool WriteAll(int fd, ReadOnlySpan<byte> data)
    {
        fixed (byte* p = data)
        {
            nuint done = 0;
            while (done < (nuint)data.Length)
            {
                nint r;
                while (Retry(r = WriteOnce(fd, p + done, (nuint)data.Length - done))) { }
                if (r < 0)
                {
                    return false;
                }
                done += (nuint)r;
            }
        }
        return true;
    }

    /// <summary>
    /// Closes every descriptor from 3 up except <paramref name="keep"/>: close_range(2), or where the
    /// kernel or a seccomp profile lacks it (ENOSYS, Linux before 5.9), each descriptor /proc/self/fd lists.
    /// </summary>
    internal static void CloseAllAbove2Except(int keep)
    {
        if ((keep <= 3 || CloseRange(3, (uint)keep - 1, 0) == 0)
            && CloseRange((uint)Math.Max(3, keep + 1), uint.MaxValue, 0) == 0)
        {
            return;
        }
        if (LastError != Errno.ENOSYS)
        {
            Throw("close_range");
        }
        foreach (string entry in Directory.GetFiles("/proc/self/fd"))
        {
            if (int.TryParse(Path.GetFileName(entry), out int fd) && fd > 2 && fd != keep)
            {
                Close(fd);
            }
        }
    }
}

internal static partial class Interop
{
    /// <summary>Sets O_NONBLOCK on <paramref name="fd"/>; -1 with errno set on failure.</summary>
    internal static int SetNonBlocking(int fd)
    {
        int statusFlags = Fcntl(fd, F_GETFL, 0);
        return statusFlags < 0 || Fcntl(fd, F_SETFL, statusFlags | O_NONBLOCK) < 0 ? -1 : 0;
    }
}
