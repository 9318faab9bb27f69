#!/usr/bin/env ruby
# frozen_string_literal: true

# A Maelstrom echo node in Ruby, shaped like the Ruby nodes people write for Maelstrom:
# STDIN.each_line with JSON, a handler per body type, replies with STDOUT.puts and a flush,
# diagnostics on STDERR.
#
# splitbrain's tests run it unchanged as `ruby echo.rb` under the Maelstrom host.

require 'json'

class EchoNode
  def initialize
    @node_id = nil
    @next_msg_id = 0
  end

  def log(line)
    STDERR.puts "echo.rb: #{line}"
  end

  def send!(dest, body)
    @next_msg_id += 1
    STDOUT.puts JSON.generate({ src: @node_id, dest: dest, body: body.merge(msg_id: @next_msg_id) })
    # The host reads line by line: a reply left in Ruby's buffer is a reply never sent.
    STDOUT.flush
  end

  def reply!(request, body)
    send!(request[:src], body.merge(in_reply_to: request[:body][:msg_id]))
  end

  def handle(request)
    body = request[:body]
    case body[:type]
    when 'init'
      @node_id = body[:node_id]
      log "#{@node_id} up, cluster #{body[:node_ids].join(',')}"
      reply!(request, { type: 'init_ok' })
    when 'echo'
      log "#{@node_id} echoes #{body[:echo].inspect}"
      reply!(request, { type: 'echo_ok', echo: body[:echo] })
    else
      reply!(request, { type: 'error', code: 10, text: "unsupported: #{body[:type]}" })
    end
  end

  def main!
    STDIN.each_line do |line|
      handle(JSON.parse(line, symbolize_names: true))
    rescue JSON::ParserError
      log "ignoring a line that is not JSON: #{line}"
    end
  end
end

EchoNode.new.main!
