#!/usr/bin/python3
# Prints the events of a sockserv fleet as they come: one line "ROUTING_KEY BODY" each.
# Usage: scripts/fleet-subscribe.py [AMQP_URL] [PATTERN] [PREFIX]
#   AMQP_URL  default $SOCKSERV_AMQP, else amqp://localhost/ (guest:guest)
#   PATTERN   a topic binding on the routing keys ev.<node>.<area>.<what>; default ev.*.listener.#
#   PREFIX    the fleet's --amqp-prefix; default sockserv
import os
import sys

import pika

url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("SOCKSERV_AMQP", "amqp://localhost/")
pattern = sys.argv[2] if len(sys.argv) > 2 else "ev.*.listener.#"
exchange = (sys.argv[3] if len(sys.argv) > 3 else "sockserv") + ".events"

connection = pika.BlockingConnection(pika.URLParameters(url))
channel = connection.channel()
# The daemons declare it too, with these arguments: whoever comes first creates it.
channel.exchange_declare(exchange=exchange, exchange_type="topic", durable=True)
# A queue of our own: named by the broker, gone when we disconnect.
queue = channel.queue_declare(queue="", exclusive=True).method.queue
channel.queue_bind(exchange=exchange, queue=queue, routing_key=pattern)
print(f"# {exchange} {pattern}: waiting for events (Ctrl-C to stop)", file=sys.stderr, flush=True)


def on_event(channel, method, properties, body):
    print(method.routing_key, body.decode(), flush=True)


channel.basic_consume(queue=queue, on_message_callback=on_event, auto_ack=True)
try:
    channel.start_consuming()
except KeyboardInterrupt:
    connection.close()
