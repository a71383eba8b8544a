using System.Runtime.InteropServices;

namespace TcpFork;

/// <summary>
/// The echo service: echo every byte until the client's EOF, then shut down the write side, close
/// and exit 0; a reset or broken pipe exits 1. Bytes move through a pipe with splice(2), so they never
/// enter this process's memory: the kernel's 64 KiB pipe is the buffer, and a forked child dirties
/// almost none of the parent's copy-on-write pages. A plain 64 KiB read/write loop covers sockets
/// that cannot splice.
/// </summary>
public static unsafe class EchoHandler
{
    private const int Chunk = 64 * 1024;

    /// <summary>Echoes <paramref name="connection"/>; returns the exit code.</summary>
    public static int Handle(Connection connection)
    {
        ArgumentNullException.ThrowIfNull(connection);
        if (connection.IsTls)
        {
            return TlsEcho.Handle(connection);
        }
        int fd = connection.Handle;
        ServerLog log = connection.Log;
        int pid = log.IsVerbose ? Interop.GetPid() : 0;
        int* pipe = stackalloc int[2];
        Errno error = Interop.Pipe2(pipe, Interop.O_CLOEXEC) == 0
            ? SpliceLoop(fd, pipe[0], pipe[1], log, pid)
            : Errno.EINVAL;
        if (error == Errno.EINVAL)
        {
            error = CopyLoop(fd, log, pid);
        }
        if (error == 0)
        {
            Interop.Shutdown(fd, Interop.SHUT_WR);
        }
        else
        {
            log.ChildError(pid, error);
        }
        Interop.Close(fd);
        return error == 0 ? 0 : 1;
    }

    /// <summary>Returns 0 at the client's EOF, EINVAL if this socket cannot splice, else the error.</summary>
    private static Errno SpliceLoop(int fd, int pipeRead, int pipeWrite, ServerLog log, int pid)
    {
        bool spliced = false;
        while (true)
        {
            nint n = Interop.Splice(fd, pipeWrite, Chunk);
            if (n == 0)
            {
                return 0;
            }
            if (n < 0)
            {
                Errno e = Interop.LastError;
                return e == Errno.EINVAL && spliced ? Errno.EPROTO : e;
            }
            spliced = true;
            log.EchoReceived(pid, n);
            for (nint left = n; left > 0;)
            {
                nint m = Interop.Splice(pipeRead, fd, (nuint)left);
                if (m < 0)
                {
                    return Interop.LastError;
                }
                left -= m;
            }
        }
    }

    private static Errno CopyLoop(int fd, ServerLog log, int pid)
    {
        byte* buffer = (byte*)NativeMemory.Alloc(Chunk);
        try
        {
            while (true)
            {
                nint n = Interop.Read(fd, buffer, Chunk);
                if (n <= 0)
                {
                    return n == 0 ? 0 : Interop.LastError;
                }
                log.EchoReceived(pid, n);
                for (nint done = 0; done < n;)
                {
                    nint m = Interop.Send(fd, buffer + done, (nuint)(n - done));
                    if (m < 0)
                    {
                        return Interop.LastError;
                    }
                    done += m;
                }
            }
        }
        finally
        {
            NativeMemory.Free(buffer);
        }
    }
}
