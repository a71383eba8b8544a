using System.Text;
using TcpFork;
using TcpFork.ConformanceHost;

// conformancehost MODE FILE: serves one probe per connection (Probes.cs). Before Run() it does what a
// real program does and a forked child must cope with: it reads the cached process id, draws from
// Random.Shared and keeps a file open. Nothing here may start a thread (fork mode would refuse).
var options = new TcpForkServerOptions { Mode = Enum.Parse<ProcessMode>(args[0], ignoreCase: true), LogLevel = LogLevel.Verbose };
options.Listen.Add(ListenAddress.Parse("127.0.0.1:0"));
var state = new ParentState(Environment.ProcessId, Random.Shared.Next(), new FileStream(args[1], FileMode.Open, FileAccess.Read));

return new TcpForkServer(async connection =>
{
    using var reader = new StreamReader(connection.Stream, Encoding.UTF8, leaveOpen: true);
    string probe = await reader.ReadLineAsync() ?? "";
    (string reply, int exitCode) = await Probes.RunAsync(probe, state);
    await connection.Stream.WriteAsync(Encoding.UTF8.GetBytes(reply + "\n"));
    return exitCode;
}, options).Run();
