namespace TcpFork.Cli;

/// <summary>Runs a server for a command, turning the library's exceptions into tcpfork's exit codes.</summary>
internal static class Serve
{
    public static int Run(TcpForkServerOptions options, ConnectionHandler handler)
    {
        try
        {
            return new TcpForkServer(handler, options).Run();
        }
        catch (NotSupportedException e)
        {
            throw new UsageException(e.Message, e);
        }
        catch (FormatException e)
        {
            throw new UsageException($"--listen {e.Message}", e);
        }
    }
}
