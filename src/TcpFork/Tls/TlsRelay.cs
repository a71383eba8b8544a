using System.Net.Security;

namespace TcpFork;

/// <summary>
/// <c>tcpfork exec --tls-cert …</c>: the child ends TLS and relays plaintext to the program over two
/// socketpairs, one a direction, on the program's descriptors 0 and 1 (posix_spawn, in the child's own
/// process group, so the parent's signals reach both). One a direction so that each closes on its own:
/// the client's close_notify or EOF becomes shutdown(SHUT_WR) on the input pair (the program reads EOF),
/// and the program's closing descriptor 1 (or shutting it down, or exiting) becomes close_notify and the
/// socket's FIN — with one socket on both 0 and 1 closing 1 alone would not end anything. The child exits
/// with the program's status (128 + N for signal N).
/// </summary>
internal static unsafe class TlsRelay
{
    private const int Chunk = 16 * 1024; // one TLS record

    public static int Run(Connection connection, ExecProgram program, List<string> env)
    {
        var tls = (SslStream)connection.Stream;
        env.RemoveAll(e => TlsEnvironment.Names.Any(n => e.StartsWith(n + "=", StringComparison.Ordinal)));
        env.AddRange(TlsEnvironment.Entries(tls));
        int* input = stackalloc int[2];
        int* output = stackalloc int[2];
        if (Interop.SocketPair(Interop.AF_UNIX, Interop.SOCK_STREAM | Interop.SOCK_CLOEXEC, 0, input) < 0
            || Interop.SocketPair(Interop.AF_UNIX, Interop.SOCK_STREAM | Interop.SOCK_CLOEXEC, 0, output) < 0)
        {
            throw Interop.Error("socketpair");
        }
        int toProgram = input[0], fromProgram = output[0];
        int pid, rc;
        using (NativeCommand command = NativeCommand.Program(program.File, program.Argv, env, 0))
        using (var spawn = new SpawnAttributes(ownGroup: false))
        {
            rc = Interop.PosixSpawnP(&pid, command.Path, spawn.Streams(input[1], output[1]), spawn.Attributes, command.Argv, command.Envp);
            spawn.Done();
        }
        Interop.Close(input[1]);
        Interop.Close(output[1]);
        if (rc != 0)
        {
            Interop.Close(toProgram);
            Interop.Close(fromProgram);
            connection.Log.ExecFailed(program.File, (Errno)rc);
            return 127;
        }
        var toClient = new Thread(() => ProgramToClient(connection, tls, fromProgram)) { IsBackground = true, Name = "tls relay" };
        toClient.Start();
        ClientToProgram(tls, toProgram, fromProgram);
        toClient.Join();
        Interop.Close(toProgram);
        Interop.Close(fromProgram);
        int status;
        while (Interop.Retry(Interop.WaitPid(pid, &status, 0)))
        {
        }
        int signal = status & 0x7f;
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal;
    }

    /// <summary>Client to program until the client's close_notify or EOF, then the program reads EOF.</summary>
    private static void ClientToProgram(SslStream tls, int ours, int fromProgram)
    {
        byte[] buffer = new byte[Chunk];
        try
        {
            int n;
            while ((n = tls.Read(buffer)) > 0)
            {
                if (!Interop.WriteAll(ours, buffer.AsSpan(0, n)))
                {
                    return; // the program closed its input: what the client sends now has nowhere to go
                }
            }
            Interop.Shutdown(ours, Interop.SHUT_WR);
        }
        catch (IOException)
        {
            // The client is gone (a reset, a broken record): the program gets EOF and EPIPE.
            Interop.Shutdown(ours, Interop.SHUT_RDWR);
            Interop.Shutdown(fromProgram, Interop.SHUT_RDWR);
        }
    }

    /// <summary>Program to client until the program closes its output, then close_notify and FIN.</summary>
    private static void ProgramToClient(Connection connection, SslStream tls, int ours)
    {
        byte[] buffer = new byte[Chunk];
        try
        {
            while (true)
            {
                nint n;
                fixed (byte* p = buffer)
                {
                    n = Interop.Read(ours, p, Chunk);
                }
                if (n <= 0)
                {
                    break;
                }
                tls.Write(buffer, 0, (int)n);
            }
            connection.CloseTlsOutput();
        }
        catch (IOException)
        {
            Interop.Shutdown(ours, Interop.SHUT_RDWR);
        }
    }
}
