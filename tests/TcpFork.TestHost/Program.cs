using System.Text;
using TcpFork;

// testhost SCENARIO MODE: a library user's program. In spawn mode each child runs this Main again, so
// everything the handler needs is set up the same way on every run, before Run().
string scenario = args[0];
if (Environment.GetEnvironmentVariable("TESTHOST_MAIN_LOG") is { } mainLog)
{
    File.AppendAllText(mainLog, $"main {Environment.ProcessId}\n"); // how often Main runs, and where
}
var options = new TcpForkServerOptions { Mode = Enum.Parse<ProcessMode>(args[1], ignoreCase: true), LogLevel = LogLevel.Verbose };
options.Listen.Add(ListenAddress.Parse("127.0.0.1:0"));

// State made before Run: a forked child sees the parent's copy; a spawned child makes its own.
string madeBy = $"made-by {Environment.ProcessId}";
var exits = new int[1];

switch (scenario)
{
    case "echo":
        options.LogLevel = LogLevel.Quiet;
        return new TcpForkServer(EchoHandler.Handle, options).Run();

    case "tls-info":
        // tls-info MODE CERT KEY CA: mutual TLS (optional), ALPN h2 or http/1.1; the handler reports what was negotiated.
        options.Tls = new TlsOptions(args[2], args[3]) { ClientCaFile = args[4], ClientCertificate = TlsClientCertificate.Optional };
        options.Tls.ApplicationProtocols.Add("h2");
        options.Tls.ApplicationProtocols.Add("http/1.1");
        return new TcpForkServer(async c =>
        {
            using var reader = new StreamReader(c.Stream, Encoding.UTF8, leaveOpen: true);
            string? line = await reader.ReadLineAsync();
            await c.Stream.WriteAsync(Encoding.UTF8.GetBytes(
                $"{line} tls {c.IsTls} {c.TlsProtocol} {c.TlsCipherSuite} {c.TlsApplicationProtocol ?? "-"} {c.ClientCertificate?.Subject ?? "-"}\n"));
            return 0;
        }, options).Run();

    case "throw":
        return new TcpForkServer((ConnectionHandler)(c => throw new InvalidOperationException("boom")), options).Run();

    case "async":
        return new TcpForkServer(async c =>
        {
            using var reader = new StreamReader(c.Stream, Encoding.UTF8);
            string? line = await reader.ReadLineAsync();
            await Task.Delay(10);
            await c.Stream.WriteAsync(Encoding.UTF8.GetBytes($"async {line} from {c.RemoteEndPoint} to {c.LocalEndPoint} #{c.Number}\n"));
            return 3;
        }, options).Run();

    case "proxy":
        // Behind a proxy: the handler and the Verify hook see the client the PROXY header names.
        options.ProxyProtocol = ProxyProtocol.Any;
        options.ProxyFrom.Add(AccessRule.Create(allow: true, "127.0.0.1"));
        var refusedBehindProxy = AccessRule.Create(allow: false, "127.0.0.4");
        options.Verify = client => !client.IsIn(refusedBehindProxy);
        return new TcpForkServer(c =>
        {
            c.Stream.Write(Encoding.UTF8.GetBytes($"from {c.RemoteEndPoint} to {c.LocalEndPoint}\n"));
            return 0;
        }, options).Run();

    case "state":
        return new TcpForkServer(c =>
        {
            exits[0] += 100; // a child's change: never seen by the parent or the next child
            c.Stream.Write(Encoding.UTF8.GetBytes($"{madeBy} {exits[0]} child {Connection.ProcessId}\n"));
            return 0;
        }, options).Run();

    case "hooks":
    case "hooks-allocating":
        var refused = AccessRule.Create(allow: false, "127.0.0.2");
        options.Verify = scenario == "hooks"
            ? client => !client.IsIn(refused)                  // clients from 127.0.0.2 are refused
            : client => client.ToString().Length > 0;          // allocates: the parent warns
        options.ChildExited = (in ChildExit e) => exits[0]++;
        return new TcpForkServer(c =>
        {
            c.Stream.Write(Encoding.UTF8.GetBytes($"exits before me {exits[0]}\n"));
            return 0;
        }, options).Run();

    case "descriptors":
        // A descriptor Main opened stays usable in the child; the idle timeout makes the parent keep
        // each connection, which no other child may hold.
        using (var kept = new FileStream(args[2], FileMode.Open, FileAccess.Read))
        {
            options.IdleTimeout = TimeSpan.FromMinutes(1);
            return new TcpForkServer(c =>
            {
                c.Stream.Write("ready\n"u8);
                using var reader = new StreamReader(c.Stream, Encoding.UTF8);
                _ = reader.ReadLine(); // the test's go-ahead, once it has looked at this process
                byte[] first = new byte[1];
                int read = RandomAccess.Read(kept.SafeFileHandle, first, 0);
                string fds = string.Join(' ', Directory.GetFiles("/proc/self/fd").Select(f => $"{Path.GetFileName(f)}->{new FileInfo(f).LinkTarget}"));
                c.Stream.Write(Encoding.UTF8.GetBytes($"kept {kept.SafeFileHandle.DangerousGetHandle()} read {read}:{(char)first[0]} fds {fds}\n"));
                return 0;
            }, options).Run();
        }

    case "threads-before-run":
        // Starts the thread pool and a timer before Run(): a fork would lose them.
        await Task.Delay(10);
        try
        {
            return new TcpForkServer(c =>
            {
                c.Stream.Write(Encoding.UTF8.GetBytes($"served by {Connection.ProcessId}\n"));
                return 0;
            }, options).Run();
        }
        catch (InvalidOperationException e)
        {
            Console.Out.WriteLine($"refused: {e.Message}");
            return 3;
        }

    case "bind-conflict":
        options.Listen.Clear();
        options.Listen.Add(ListenAddress.Parse($"127.0.0.1:{args[2]}"));
        try
        {
            return new TcpForkServer(EchoHandler.Handle, options).Run();
        }
        catch (BindException e)
        {
            Console.Out.WriteLine($"caught {e.GetType().Name}: {e.Message}");
            return 4;
        }

    case "verify-throws":
        // Clients from an even port are refused by the hook throwing: the parent must survive it.
        options.Verify = client => client.Port % 2 == 0 ? throw new InvalidOperationException("even port") : true;
        return new TcpForkServer(c =>
        {
            c.Stream.Write("served\n"u8);
            return 0;
        }, options).Run();

    case "exit-throws":
        // Two exception types, alternating: each is logged once, and the parent serves on.
        options.ChildExited = (in ChildExit e) =>
        {
            exits[0]++;
            throw exits[0] % 2 == 1 ? new InvalidOperationException("odd exit") : new FormatException("even exit\nsecond line");
        };
        return new TcpForkServer(c =>
        {
            c.Stream.Write("served\n"u8);
            return 0;
        }, options).Run();

    case "memory":
        // "managed N" or "native N": allocate N MiB (1 MiB at a time, every page touched) and keep it.
        options.Limits.AddressSpace = 256L << 20;
        return new TcpForkServer(c =>
        {
            using var reader = new StreamReader(c.Stream, Encoding.UTF8);
            string[] words = reader.ReadLine()!.Split(' ');
            int mib = int.Parse(words[1], System.Globalization.CultureInfo.InvariantCulture);
            var kept = new List<byte[]>();
            for (int i = 0; i < mib; i++)
            {
                if (words[0] == "native")
                {
                    nint block = System.Runtime.InteropServices.Marshal.AllocHGlobal(1 << 20); // throws OutOfMemoryException when malloc fails
                    for (int page = 0; page < 1 << 20; page += 4096)
                    {
                        System.Runtime.InteropServices.Marshal.WriteByte(block, page, 1);
                    }
                }
                else
                {
                    byte[] block = new byte[1 << 20];
                    block.AsSpan().Fill(1);
                    kept.Add(block);
                }
            }
            string asLimit = File.ReadLines("/proc/self/limits").First(l => l.StartsWith("Max address space", StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries)[3];
            long vmSize = long.Parse(File.ReadAllText("/proc/self/statm").Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture) * Environment.SystemPageSize;
            c.Stream.Write(Encoding.UTF8.GetBytes($"allocated {mib} heap-limit {GC.GetGCMemoryInfo().TotalAvailableMemoryBytes} as-limit {asLimit} vm {vmSize}\n"));
            return 0;
        }, options).Run();

    case "meter":
        // A collector in the server's own process (spawn mode: the parent may have threads): the meter
        // TcpFork's observable instruments, read each time the test writes a line to stdin; each changed
        // value printed once.
        options.Rules.Add(AccessRule.Create(allow: false, "127.0.0.2"));
        var printed = new Dictionary<string, long>();
        var listener = new System.Diagnostics.Metrics.MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name == "TcpFork")
                {
                    l.EnableMeasurementEvents(instrument);
                }
            },
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            string line = string.Join(' ', [$"meter {instrument.Name}", .. tags.ToArray().Select(t => $"{t.Key}={t.Value}")]);
            if (!printed.TryGetValue(line, out long old) || old != value)
            {
                printed[line] = value;
                Console.Out.WriteLine($"{line} {value}");
            }
        });
        listener.Start();
        new Thread(() =>
        {
            while (Console.In.ReadLine() is not null)
            {
                listener.RecordObservableInstruments();
            }
        }) { IsBackground = true }.Start();
        return new TcpForkServer(EchoHandler.Handle, options).Run();

    default:
        Console.Error.WriteLine($"unknown scenario {scenario}");
        return 2;
}
