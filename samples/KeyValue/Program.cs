// A line-based key-value server. The table is loaded in the parent, before Run: forked children read
// the parent's copy (copy-on-write, nothing copied until written); spawned children run Main again and
// load it the same way. A SET changes only that connection's copy — each connection is its own process.
//   dotnet run --project samples/KeyValue -- data.txt 127.0.0.1:7070     (data.txt: key=value lines)
//   printf 'GET colour\nSET colour red\nGET colour\nKEYS\nQUIT\n' | nc 127.0.0.1 7070
using TcpFork;

Dictionary<string, string> table = args.Length > 0 && File.Exists(args[0])
    ? File.ReadLines(args[0]).Select(l => l.Split('=', 2)).Where(p => p.Length == 2).ToDictionary(p => p[0], p => p[1])
    : new() { ["colour"] = "blue", ["answer"] = "42" };

var options = new TcpForkServerOptions();
options.Listen.Add(ListenAddress.Parse(args.Length > 1 ? args[1] : "127.0.0.1:0"));

return new TcpForkServer(async connection =>
{
    using var reader = new StreamReader(connection.Stream);
    using var writer = new StreamWriter(connection.Stream) { AutoFlush = true, NewLine = "\n" };
    while (await reader.ReadLineAsync() is string line)
    {
        string[] words = line.Split(' ', 3, StringSplitOptions.RemoveEmptyEntries);
        switch (words.FirstOrDefault()?.ToUpperInvariant())
        {
            case "GET" when words.Length == 2:
                await writer.WriteLineAsync(table.TryGetValue(words[1], out string? value) ? $"VALUE {value}" : "NOT_FOUND");
                break;
            case "SET" when words.Length == 3:
                table[words[1]] = words[2]; // this process's copy only
                await writer.WriteLineAsync("OK");
                break;
            case "KEYS":
                await writer.WriteLineAsync($"KEYS {string.Join(' ', table.Keys.Order())}");
                break;
            case "QUIT":
                await writer.WriteLineAsync("BYE");
                return 0;
            default:
                await writer.WriteLineAsync("ERROR expected GET KEY, SET KEY VALUE, KEYS or QUIT");
                break;
        }
    }
    return 0;
}, options).Run();
