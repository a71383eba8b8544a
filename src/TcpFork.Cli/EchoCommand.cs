using System.CommandLine;

namespace TcpFork.Cli;

/// <summary><c>tcpfork echo</c>: echo every connection's bytes back until EOF, one process per connection.</summary>
internal static class EchoCommand
{
    public static Command Create()
    {
        var server = new ServerOptionsBinder();
        var command = new Command("echo", "Echo server: each connection's bytes come back until EOF, one process per connection.");
        server.AddTo(command);
        command.SetAction(parsed => Serve.Run(new TcpForkServer(EchoHandler.Handle, server.Bind(parsed))));
        return command;
    }
}
