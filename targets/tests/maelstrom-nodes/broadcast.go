// A Maelstrom node in Go, standard library only, shaped like the Go nodes people write for
// Maelstrom: one JSON message per line on stdin, handlers picked by the body's type, replies
// and requests written to stdout by a mutex-guarded writer, diagnostics on stderr. It
// handles echo and broadcast (topology, broadcast, read): a new message is passed on to
// every neighbour as a node-to-node `broadcast` request and offered again until that
// neighbour answers `broadcast_ok`, so it gets through partitions and loss.
//
// splitbrain's tests build it with `go build` and run it unchanged under the Maelstrom host.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"sort"
	"sync"
	"time"
)

// How often unacknowledged messages are offered to a neighbour again.
const retryEvery = 150 * time.Millisecond

// The longest line read from stdin: reads answer every message, and lines carry them.
const maxLineBytes = 1 << 20

type message struct {
	Src  string          `json:"src"`
	Dest string          `json:"dest"`
	Body json.RawMessage `json:"body"`
}

// The fields this node reads from any body; absent ones stay zero.
type body struct {
	Type      string              `json:"type"`
	MsgID     int64               `json:"msg_id"`
	InReplyTo int64               `json:"in_reply_to"`
	NodeID    string              `json:"node_id"`
	NodeIDs   []string            `json:"node_ids"`
	Echo      json.RawMessage     `json:"echo"`
	Topology  map[string][]string `json:"topology"`
	Message   int64               `json:"message"`
}

// A broadcast request to a neighbour that has not been acknowledged yet.
type unacked struct {
	dest    string
	message int64
}

type node struct {
	mu         sync.Mutex
	out        *bufio.Writer
	id         string
	nextMsgID  int64
	neighbours []string
	messages   map[int64]bool
	// Our msg_id of each unacknowledged request -> what it carried.
	pending map[int64]unacked
}

// send writes one message; the caller holds n.mu, which keeps lines whole.
func (n *node) send(dest string, b map[string]any) {
	if _, isReply := b["in_reply_to"]; !isReply {
		n.nextMsgID++
		b["msg_id"] = n.nextMsgID
	}
	line, err := json.Marshal(map[string]any{"src": n.id, "dest": dest, "body": b})
	if err != nil {
		log.Fatalf("cannot encode a message to %s: %v", dest, err)
	}
	n.out.Write(line)
	n.out.WriteByte('\n')
	// The host reads line by line: a reply left in the buffer is a reply never sent.
	n.out.Flush()
}

func (n *node) reply(to message, req body, b map[string]any) {
	b["in_reply_to"] = req.MsgID
	n.send(to.Src, b)
}

// gossip asks dest to take message; the request stays pending until acknowledged.
func (n *node) gossip(dest string, message int64) {
	n.send(dest, map[string]any{"type": "broadcast", "message": message})
	n.pending[n.nextMsgID] = unacked{dest, message}
}

func (n *node) handle(msg message) {
	var req body
	if err := json.Unmarshal(msg.Body, &req); err != nil {
		log.Printf("ignoring a body that is not an object: %s", msg.Body)
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	switch req.Type {
	case "init":
		n.id = req.NodeID
		log.Printf("broadcast.go: %s up, cluster %v", n.id, req.NodeIDs)
		n.reply(msg, req, map[string]any{"type": "init_ok"})
	case "echo":
		n.reply(msg, req, map[string]any{"type": "echo_ok", "echo": req.Echo})
	case "topology":
		n.neighbours = req.Topology[n.id]
		log.Printf("broadcast.go: %s neighbours %v", n.id, n.neighbours)
		n.reply(msg, req, map[string]any{"type": "topology_ok"})
	case "broadcast":
		if !n.messages[req.Message] {
			n.messages[req.Message] = true
			for _, peer := range n.neighbours {
				if peer != msg.Src {
					n.gossip(peer, req.Message)
				}
			}
		}
		n.reply(msg, req, map[string]any{"type": "broadcast_ok"})
	case "broadcast_ok":
		delete(n.pending, req.InReplyTo)
	case "read":
		all := make([]int64, 0, len(n.messages))
		for m := range n.messages {
			all = append(all, m)
		}
		sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
		n.reply(msg, req, map[string]any{"type": "read_ok", "messages": all})
	default:
		n.reply(msg, req, map[string]any{
			"type": "error", "code": 10, "text": fmt.Sprintf("unsupported: %s", req.Type),
		})
	}
}

// retry offers every unacknowledged message again, under a fresh msg_id: an answer to the
// old request (late, after a heal) is simply ignored.
func (n *node) retry() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.pending) == 0 {
		return
	}
	old := n.pending
	n.pending = make(map[int64]unacked, len(old))
	for _, u := range old {
		n.gossip(u.dest, u.message)
	}
	log.Printf("broadcast.go: %s offered %d unacknowledged messages again", n.id, len(old))
}

func main() {
	log.SetFlags(log.Lmicroseconds)
	n := &node{
		out:      bufio.NewWriter(os.Stdout),
		messages: map[int64]bool{},
		pending:  map[int64]unacked{},
	}
	go func() {
		for range time.Tick(retryEvery) {
			n.retry()
		}
	}()
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 64*1024), maxLineBytes)
	for scanner.Scan() {
		var msg message
		if err := json.Unmarshal(scanner.Bytes(), &msg); err != nil {
			log.Printf("ignoring a line that is not a message: %q", scanner.Text())
			continue
		}
		n.handle(msg)
	}
	if err := scanner.Err(); err != nil {
		log.Fatalf("reading stdin: %v", err)
	}
}
