namespace TcpFork;

/// <summary>
/// The echo service over TLS: the bytes must pass through this process to be decrypted and
/// encrypted again, so it reads and writes the plaintext stream (no splice). At the client's
/// close_notify or EOF it sends its own close_notify and shuts down the socket's write side.
/// </summary>
internal static class TlsEcho
{
    private const int Chunk = 16 * 1024; // one TLS record

    public static int Handle(Connection connection)
    {
        ServerLog log = connection.Log;
        int pid = log.IsVerbose ? Interop.GetPid() : 0;
        Stream stream = connection.Stream;
        byte[] buffer = new byte[Chunk];
        try
        {
            int n;
            while ((n = stream.Read(buffer)) > 0)
            {
                log.EchoReceived(pid, n);
                stream.Write(buffer, 0, n);
            }
            connection.CloseTlsOutput();
            return 0;
        }
        catch (IOException e)
        {
            log.ChildError(pid, e.HResult is > 0 and < 4096 ? (Errno)e.HResult : Errno.EPROTO);
            return 1;
        }
    }
}
